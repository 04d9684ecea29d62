"""The `cspm-watch` command line: parse, call, print.

Each command stays thin: it parses options, calls the module that does the work and prints the
result. Errors the service raises on purpose become one line on standard error and a non-zero
exit code, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import click

from service import __version__
from service.commands.params import check_not_blank, check_urns
from service.config import CONFIG_PATH_VARIABLE, DEFAULT_DATABASE_URL, Settings, load_settings
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
    help=(
        "Database to migrate; also read from CSPM_WATCH_DATABASE_URL. Without either, the "
        "database_url of the configuration file (--config or CSPM_WATCH_CONFIG), else "
        f"{DEFAULT_DATABASE_URL}."
    ),
)
@click.pass_context
def db_upgrade(ctx: click.Context, database_url: str | None) -> None:
    """Apply every pending migration to the database.

    Exit codes: 0 the database is at the newest revision; 2 invalid configuration or database
    URL; 3 the database could not be opened or migrated.
    """
    from service.commands.database import upgrade_schema
    from service.logging import configure_logging

    url = database_url or _configured_database_url(ctx)
    # Log lines go to standard error and only from WARNING up, as for the other commands.
    configure_logging(level="WARNING")
    ctx.exit(_run_async(upgrade_schema(url)))


def _configured_database_url(ctx: click.Context) -> str:
    """Return the configuration file's database_url, or the default without a file."""
    if ctx.find_root().ensure_object(dict).get("config_path") is None:
        return DEFAULT_DATABASE_URL
    return settings_from_context(ctx).database_url


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
    success); 1 at least one cycle failed or a delivery gave up after its last attempt; 2
    invalid configuration or usage; 3 the database could not be opened or migrated; 130 or
    143 stopped by SIGINT or SIGTERM.
    """
    if dry_run:
        from service.logging import configure_logging
        from service.preview import preview_targets

        settings = settings_from_context(ctx)
        # Logs go to standard error and at WARNING, so standard output contains only the messages.
        configure_logging(level="WARNING")
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
        _print_error(str(error))
        return CONFIG_ERROR_EXIT_CODE
    except (StorageError, SQLAlchemyError) as error:
        _print_error(f"the database failed: {_first_line(error)}")
        return EXIT_DATABASE_ERROR
    except (CspmWatchError, OSError) as error:
        _print_error(_first_line(error))
        return 1


def _print_error(text: str) -> None:
    from service.text import clean_text

    # Errors may quote values from DigitalOcean or from the command line.
    click.echo(f"error: {clean_text(text)}", err=True)


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


# Commands on one team's security data and on the stored history. Each parses its options and
# hands the work to a function in service.commands, whose return value is the exit code.


def _parse_output(_ctx: click.Context, _param: click.Parameter, value: str) -> Any:
    from service.commands.output import OutputFormat

    return OutputFormat(value)


def _output_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--output",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
        callback=_parse_output,
        help="Print a table for people or JSON for scripts.",
    )(function)


def _target_option(function: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--target",
        "target_name",
        metavar="NAME",
        help=(
            "Act for this target, with its token and api_url. Needed only when several "
            "targets are configured."
        ),
    )(function)


def _source_option(function: Callable[..., Any]) -> Callable[..., Any]:
    def parse(_ctx: click.Context, _param: click.Parameter, value: str) -> Any:
        from service.commands.findings import Source

        return Source(value)

    return click.option(
        "--from",
        "source",
        type=click.Choice(["api", "db"]),
        default="api",
        show_default=True,
        callback=parse,
        help="Read from the DigitalOcean API, or from the scans that cycles stored.",
    )(function)


def _parse_severity(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    from service.digitalocean.models import Severity

    return None if value is None else Severity.parse(value)


def _run_command(ctx: click.Context, work: Callable[[Settings], Coroutine[Any, Any, int]]) -> None:
    """Load the settings, run `work` with them and exit with the code it returns."""
    from service.logging import configure_logging

    settings = settings_from_context(ctx)
    # Log lines go to standard error and only from WARNING up, so that standard output
    # carries nothing but the result, which scripts parse.
    configure_logging(level="WARNING")
    ctx.exit(_run_async(work(settings)))


@cli.group()
def scans() -> None:
    """List, show and start a team's scans."""


@scans.command("list")
@click.option(
    "--stored",
    is_flag=True,
    help=(
        "List the scans stored in the database, with their finding and diff counts, instead "
        "of asking DigitalOcean. With --target, only that target's."
    ),
)
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="With --stored, list at most this many scans, the newest first.",
)
@_target_option
@_output_option
@click.pass_context
def scans_list(
    ctx: click.Context, stored: bool, limit: int, target_name: str | None, output: Any
) -> None:
    """List the team's scans, newest first."""
    from service.commands.scans import list_api_scans, list_stored_scans

    if stored:
        _run_command(ctx, lambda settings: list_stored_scans(settings, target_name, limit, output))
    else:
        _run_command(ctx, lambda settings: list_api_scans(settings, target_name, output))


@scans.command("get")
@click.argument("scan_id", callback=check_not_blank)
@_target_option
@_output_option
@click.pass_context
def scans_get(ctx: click.Context, scan_id: str, target_name: str | None, output: Any) -> None:
    """Show a scan's status and its finding counts by severity."""
    from service.commands.scans import show_scan

    _run_command(ctx, lambda settings: show_scan(settings, target_name, scan_id, output))


@scans.command("latest")
@_target_option
@_output_option
@click.pass_context
def scans_latest(ctx: click.Context, target_name: str | None, output: Any) -> None:
    """Show the team's latest scan and its finding counts by severity."""
    from service.commands.scans import show_latest_scan

    _run_command(ctx, lambda settings: show_latest_scan(settings, target_name, output))


@scans.command("create")
@click.option(
    "--wait",
    is_flag=True,
    help=(
        "Poll the scan with the target's poll settings until it finishes, then show its "
        "finding counts. Exit code 0 only if it COMPLETED."
    ),
)
@_target_option
@_output_option
@click.pass_context
def scans_create(ctx: click.Context, wait: bool, target_name: str | None, output: Any) -> None:
    """Start a scan of the team.

    The scan is not stored in the database; `once` and `run` store the scans they start.
    With --wait, progress goes to standard error: a spinner on a terminal, else one line per
    status change.
    """
    from service.commands.scans import create_scan

    _run_command(ctx, lambda settings: create_scan(settings, target_name, wait=wait, output=output))


@cli.command()
@click.argument("scan_id", required=False, callback=check_not_blank)
@click.option("--latest", is_flag=True, help="Show the latest scan's findings (the default).")
@click.option(
    "--severity",
    type=click.Choice(["CRITICAL", "HIGH", "MEDIUM", "LOW"], case_sensitive=False),
    callback=_parse_severity,
    help="Show only the findings of this severity.",
)
@_source_option
@_target_option
@_output_option
@click.pass_context
def findings(
    ctx: click.Context,
    scan_id: str | None,
    latest: bool,
    severity: Any,
    source: Any,
    target_name: str | None,
    output: Any,
) -> None:
    """List the findings of scan SCAN_ID, or of the latest scan.

    From the database (--from db), the latest scan is the target's newest stored COMPLETED
    scan.
    """
    from service.commands.findings import show_findings

    if scan_id is not None and latest:
        raise click.UsageError("give either SCAN_ID or --latest, not both")
    _run_command(
        ctx,
        lambda settings: show_findings(
            settings, target_name, scan_id, severity=severity, source=source, output=output
        ),
    )


@cli.command()
@click.argument("scan_id", callback=check_not_blank)
@click.argument("rule_uuid", callback=check_not_blank)
@_source_option
@_target_option
@_output_option
@click.pass_context
def resources(
    ctx: click.Context,
    scan_id: str,
    rule_uuid: str,
    source: Any,
    target_name: str | None,
    output: Any,
) -> None:
    """List the resources affected by the finding of rule RULE_UUID in scan SCAN_ID."""
    from service.commands.findings import show_resources

    _run_command(
        ctx,
        lambda settings: show_resources(
            settings, target_name, scan_id, rule_uuid, source=source, output=output
        ),
    )


@cli.command("diff")
@click.argument("scan_ids", nargs=-1, metavar="[SCAN_ID_OLD SCAN_ID_NEW]")
@_target_option
@_output_option
@click.pass_context
def diff_command(
    ctx: click.Context, scan_ids: tuple[str, ...], target_name: str | None, output: Any
) -> None:
    """Show how one stored scan differs from an older one: new, escalated and resolved findings.

    Without scan ids, compare the target's last two stored COMPLETED scans whose collection
    is complete. The older scan's findings serve as the only history, so no finding can be
    reopened here: reopened findings show up as new. Unchanged findings are only counted.
    """
    from service.commands.history import diff_stored_scans

    if len(scan_ids) not in (0, 2):
        raise click.UsageError("give no scan id or two: SCAN_ID_OLD SCAN_ID_NEW")
    _run_command(ctx, lambda settings: diff_stored_scans(settings, target_name, scan_ids, output))


@cli.group()
def suppressions() -> None:
    """List, create and delete suppressions at DigitalOcean (per rule and resource)."""


@suppressions.command("list")
@_target_option
@_output_option
@click.pass_context
def suppressions_list(ctx: click.Context, target_name: str | None, output: Any) -> None:
    """List every suppression of the team."""
    from service.commands.suppressions import list_suppressions

    _run_command(ctx, lambda settings: list_suppressions(settings, target_name, output))


@suppressions.command("create")
@click.argument("rule_uuid", callback=check_not_blank)
@click.argument("urns", nargs=-1, required=True, metavar="URN [URN ...]", callback=check_urns)
@_target_option
@_output_option
@click.pass_context
def suppressions_create(
    ctx: click.Context,
    rule_uuid: str,
    urns: tuple[str, ...],
    target_name: str | None,
    output: Any,
) -> None:
    """Suppress rule RULE_UUID on the resources URN (such as do:droplet:123)."""
    from service.commands.suppressions import create_suppression

    _run_command(
        ctx,
        lambda settings: create_suppression(settings, target_name, rule_uuid, urns, output),
    )


@suppressions.command("delete")
@click.argument("suppression_id", metavar="ID", callback=check_not_blank)
@_target_option
@click.pass_context
def suppressions_delete(ctx: click.Context, suppression_id: str, target_name: str | None) -> None:
    """Delete the suppression ID (the ID column of `suppressions list`)."""
    from service.commands.suppressions import delete_suppression

    _run_command(ctx, lambda settings: delete_suppression(settings, target_name, suppression_id))


@cli.command("false-positive")
@click.argument("urn", callback=check_urns)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_target_option
@click.pass_context
def false_positive(ctx: click.Context, urn: str, yes: bool, target_name: str | None) -> None:
    """Mark resource URN as a false positive: DigitalOcean excludes it from future scans."""
    from service.commands.suppressions import mark_false_positive

    if not yes:
        click.confirm(
            f"Exclude {urn} from every future scan? cspm-watch has no command to undo this",
            abort=True,
        )
    _run_command(ctx, lambda settings: mark_false_positive(settings, target_name, urn))


@cli.group()
def plan() -> None:
    """Show and set which resources and tags each CSPM plan tier covers."""


@plan.command("show")
@_target_option
@_output_option
@click.pass_context
def plan_show(ctx: click.Context, target_name: str | None, output: Any) -> None:
    """Show the tier coverage and any planned downgrades."""
    from service.commands.plan import show_plan

    _run_command(ctx, lambda settings: show_plan(settings, target_name, output))


@plan.command("set")
@click.argument("tier", callback=check_not_blank)
@click.option(
    "--resource",
    "resource_urns",
    multiple=True,
    metavar="URN",
    callback=check_urns,
    help="A resource the tier covers (repeatable).",
)
@click.option(
    "--tag", "tags", multiple=True, metavar="TAG", help="A tag the tier covers (repeatable)."
)
@_target_option
@_output_option
@click.pass_context
def plan_set(
    ctx: click.Context,
    tier: str,
    resource_urns: tuple[str, ...],
    tags: tuple[str, ...],
    target_name: str | None,
    output: Any,
) -> None:
    """Set the resources and tags that plan tier TIER (such as basic) covers.

    The given lists replace the tier's current ones; other tiers are left as they are.
    """
    from service.commands.plan import set_tier_coverage

    if not resource_urns and not tags:
        raise click.UsageError("give at least one --resource or --tag")
    _run_command(
        ctx,
        lambda settings: set_tier_coverage(
            settings, target_name, tier, resource_urns, tags, output
        ),
    )


@cli.group()
def deliveries() -> None:
    """List the outbox of messages to notifiers, and retry failed ones."""


def _parse_delivery_status(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    from service.storage import DeliveryStatus

    return None if value is None else DeliveryStatus(value)


@deliveries.command("list")
@click.option(
    "--status",
    type=click.Choice(["pending", "sending", "sent", "failed"]),
    callback=_parse_delivery_status,
    help="List only the deliveries in this status.",
)
@click.option("--notifier", help="List only the deliveries to this notifier.")
@click.option("--target", "target_name", metavar="NAME", help="List only this target's deliveries.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="List at most this many deliveries, the newest first.",
)
@_output_option
@click.pass_context
def deliveries_list(
    ctx: click.Context,
    status: Any,
    notifier: str | None,
    target_name: str | None,
    limit: int,
    output: Any,
) -> None:
    """List deliveries, newest first."""
    from service.commands.deliveries import list_outbox

    _run_command(
        ctx,
        lambda settings: list_outbox(
            settings,
            status=status,
            target_name=target_name,
            notifier=notifier,
            limit=limit,
            output=output,
        ),
    )


@deliveries.command("retry")
@click.argument("delivery_ids", nargs=-1, type=click.IntRange(min=1), metavar="[ID ...]")
@click.option("--all-failed", is_flag=True, help="Retry every failed delivery.")
@click.option(
    "--no-send",
    is_flag=True,
    help="Only queue the deliveries again; the daemon or the next `once` sends them.",
)
@_output_option
@click.pass_context
def deliveries_retry(
    ctx: click.Context,
    delivery_ids: tuple[int, ...],
    all_failed: bool,
    no_send: bool,
    output: Any,
) -> None:
    """Queue failed deliveries again with a fresh attempt budget, then send every due
    delivery now through the configured notifiers, also when none was queued again.

    Sent, pending and unknown ids are reported and left alone. Exit code 1 when a requested
    id was not retried or a delivery failed again.
    """
    from service.commands.deliveries import retry_outbox

    if bool(delivery_ids) == all_failed:
        raise click.UsageError("give delivery ids or --all-failed, one of the two")
    ids = None if all_failed else delivery_ids
    _run_command(ctx, lambda settings: retry_outbox(settings, ids, send=not no_send, output=output))


@cli.group()
def notify() -> None:
    """Check the configured notifiers."""


@notify.command("test")
@click.option(
    "--notifier",
    "notifier_names",
    multiple=True,
    metavar="NAME",
    help="Send only through this notifier (repeatable); every configured notifier when omitted.",
)
@click.pass_context
def notify_test(ctx: click.Context, notifier_names: tuple[str, ...]) -> None:
    """Send a clearly labelled test message through each notifier at once, bypassing the
    outbox, and print whether each was sent.

    Exit codes: 0 every message was sent; 1 at least one failed; 2 invalid configuration or
    an unknown notifier name.
    """
    from service.notifiers.checks import notify_test_command

    _run_command(ctx, lambda settings: notify_test_command(settings, notifier_names))


def main() -> None:
    cli()
