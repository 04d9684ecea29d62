"""The `cspm-watch` command line: parse, call, print.

Each command stays thin: it parses options, calls the module that does the work and prints the
result. Errors the service raises on purpose become one line on standard error and a non-zero
exit code, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
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


def main() -> None:
    cli()
