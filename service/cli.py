"""The `cspm-watch` command line: parse, call, print.

Each command stays thin: it parses options, calls the module that does the work and prints the
result. Errors the service raises on purpose become one line on standard error and a non-zero
exit code, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import click

from service import __version__
from service.config import CONFIG_PATH_VARIABLE, Settings, load_settings
from service.errors import ConfigError

# Exit code of a command whose configuration is invalid; click uses 2 for usage errors too.
CONFIG_ERROR_EXIT_CODE = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cspm-watch")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    envvar=CONFIG_PATH_VARIABLE,
    help=(
        "Read the YAML configuration file at PATH. Without it, DIGITALOCEAN_TOKEN and the "
        "notifier variables configure one target."
    ),
)
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None) -> None:
    """Keep watch over DigitalOcean teams through the DigitalOcean Security (CSPM) API."""
    ctx.ensure_object(dict)["config_path"] = config_path


def settings_from_context(ctx: click.Context) -> Settings:
    """Load the settings from the --config path stored on the context.

    An invalid configuration prints its problems on standard error and exits with code 2.
    """
    config_path: Path | None = ctx.find_root().ensure_object(dict).get("config_path")
    try:
        return load_settings(config_path)
    except ConfigError as error:
        click.echo(str(error), err=True)
        ctx.exit(CONFIG_ERROR_EXIT_CODE)


@cli.group()
def config() -> None:
    """Check the configuration."""


@config.command("check")
@click.option(
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="Print the configuration as aligned key-value lines or as JSON.",
)
@click.pass_context
def config_check(ctx: click.Context, output: str) -> None:
    """Validate the configuration and print it with secrets masked.

    Exits with 0 when the configuration is valid and 2, listing every problem on standard
    error, when it is not.
    """
    settings = settings_from_context(ctx)
    data = settings.masked_dict()
    if output == "json":
        click.echo(json.dumps(data, indent=2))
        return
    rows = list(_flatten(data))
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        click.echo(f"{key:<{width}}  {value}")


def _flatten(data: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Yield (key path, value) pairs of nested mappings and lists, such as targets[0].name."""
    if isinstance(data, dict) and data:
        for key, value in data.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(data, list) and data and any(isinstance(item, dict) for item in data):
        for index, item in enumerate(data):
            yield from _flatten(item, f"{prefix}[{index}]")
    else:
        yield prefix, json.dumps(data) if not isinstance(data, str) else data


@cli.group()
def db() -> None:
    """Manage the database schema."""


@db.command("upgrade")
@click.option(
    "--database-url",
    envvar="CSPM_WATCH_DATABASE_URL",
    default="sqlite+aiosqlite:///cspm-watch.db",
    show_default=True,
    help="Database to migrate; also read from CSPM_WATCH_DATABASE_URL.",
)
def db_upgrade(database_url: str) -> None:
    """Apply every pending migration to the database."""
    import asyncio

    from service.errors import CspmWatchError
    from service.storage import mask_database_url, upgrade_database

    try:
        revision = asyncio.run(upgrade_database(database_url))
    except CspmWatchError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{mask_database_url(database_url)} is at revision {revision}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8089,
    show_default=True,
    help="TCP port to listen on; 0 picks a free one.",
)
@click.option(
    "--scenario",
    "scenario_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Scenario YAML file (see config/scenarios/); the built-in scenario when omitted.",
)
@click.option(
    "--token",
    help="Bearer token to accept. When omitted, a random token is generated and printed.",
)
@click.option(
    "--latency-ms",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Delay every response by this many milliseconds.",
)
@click.option(
    "--per-minute",
    type=click.IntRange(min=1),
    default=250,
    show_default=True,
    help="Requests a token may make in any 60 seconds before a 429.",
)
@click.option(
    "--per-hour",
    type=click.IntRange(min=1),
    default=5000,
    show_default=True,
    help="Requests a token may make in any hour before a 429.",
)
def simulate(
    host: str,
    port: int,
    scenario_path: Path | None,
    token: str | None,
    latency_ms: int,
    per_minute: int,
    per_hour: int,
) -> None:
    """Serve a local DigitalOcean Security API until Ctrl+C, to try cspm-watch without an
    account."""
    import asyncio

    from service.logging import configure_logging
    from service.simulator import ScenarioError, SimulatorRateLimits, generate_token, serve
    from service.simulator.server import startup_banner

    configure_logging()
    show_token = token is None
    accepted_token = token or generate_token()
    try:
        asyncio.run(
            serve(
                host,
                port,
                scenario_path,
                accepted_token,
                latency_s=latency_ms / 1000,
                rate_limits=SimulatorRateLimits(per_minute=per_minute, per_hour=per_hour),
                on_started=lambda sim: click.echo(startup_banner(sim, show_token=show_token)),
            )
        )
    except ScenarioError as error:
        raise click.ClickException(str(error)) from None
    except OSError as error:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {error.strerror}; choose another --port"
        ) from None


@cli.command()
@click.pass_context
def run(ctx: click.Context) -> None:
    """Run the daemon: every target on its schedule, until SIGTERM or Ctrl+C.

    Exit codes: 143 or 130 after a clean stop on SIGTERM or SIGINT; 2 invalid configuration;
    3 the database could not be opened or migrated.
    """
    _run_service(ctx, "run", ())


@cli.command()
@click.option(
    "--target",
    "target_names",
    multiple=True,
    help="Run only this target (repeatable); every configured target when omitted.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help=(
        "Read the team's latest scan, diff it against the stored history and print every "
        "message that would be sent, without starting a scan, storing or sending anything."
    ),
)
@click.pass_context
def once(ctx: click.Context, target_names: tuple[str, ...], dry_run: bool) -> None:
    """Run one cycle per target concurrently, send the alerts, then exit.

    Exit codes: 0 every cycle succeeded (a target held by another process counts as
    success); 1 at least one cycle failed; 2 invalid configuration or usage; 3 the database
    could not be opened or migrated; 130 or 143 stopped by SIGINT or SIGTERM.
    """
    if dry_run:
        from service.preview import preview_targets

        settings = settings_from_context(ctx)
        ctx.exit(_run_async(preview_targets(settings, target_names)))
    _run_service(ctx, "once", target_names)


def _run_service(ctx: click.Context, job: str, target_names: tuple[str, ...]) -> None:
    from service.logging import configure_logging
    from service.runtime import run_with_signals

    settings = settings_from_context(ctx)
    configure_logging(level=settings.log_level)
    ctx.exit(_run_async(run_with_signals(job, settings, target_names)))


def _run_async(main: Coroutine[Any, Any, int]) -> int:
    """Run `main` and turn the service's own errors into one line and an exit code."""
    import asyncio

    from sqlalchemy.exc import SQLAlchemyError

    from service.errors import CspmWatchError, StorageError
    from service.runtime import EXIT_DATABASE_ERROR

    try:
        return asyncio.run(main)
    except ConfigError as error:
        click.echo(f"error: {error}", err=True)
        return CONFIG_ERROR_EXIT_CODE
    except (StorageError, SQLAlchemyError) as error:
        click.echo(f"error: the database failed: {_first_line(error)}", err=True)
        return EXIT_DATABASE_ERROR
    except (CspmWatchError, OSError) as error:
        click.echo(f"error: {_first_line(error)}", err=True)
        return 1


def _first_line(error: BaseException) -> str:
    from service.logging import redact_text

    text = str(getattr(error, "orig", None) or error) or type(error).__name__
    return redact_text(text.splitlines()[0])


@cli.command()
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-data"),
    show_default=True,
    help="Directory for the demo's database and configuration; emptied at start.",
)
def demo(data_dir: Path) -> None:
    """Run three scan cycles against a built-in simulated team and print what they alert."""
    from service.demo import run_demo
    from service.logging import configure_logging

    configure_logging(level="WARNING")
    raise SystemExit(run_demo(data_dir))


def main() -> None:
    cli()
