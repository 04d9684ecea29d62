"""`once --dry-run`: show what the next cycle would send, without changing anything.

The preview reads the team's latest scan (it starts none), diffs it against the stored finding
states, applies the alert policy and prints every message body each notifier would get. It
writes nothing to the database and sends nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click

from service.alerting import decide_alerts
from service.config import Settings, TargetSettings
from service.diffing import FindingState, compute_diff
from service.notifiers.content import AlertBatch
from service.notifiers.render import render_deliveries
from service.runtime import Runtime, open_runtime, select_targets, utc_now
from service.scanning.collect import collect_scan
from service.scanning.cycle import alert_policy_of, notifier_names
from service.storage import (
    database_revision,
    load_finding_states,
    parse_database_url,
    previous_completed_scan,
)


async def preview_targets(settings: Settings, target_names: Sequence[str]) -> int:
    """Print the messages each selected target's latest scan would send; return 0."""
    targets = select_targets(settings, target_names)
    has_schema = _database_exists(settings.database_url) and (
        await database_revision(settings.database_url) is not None
    )
    async with open_runtime(settings, migrate=False, connect=has_schema) as runtime:
        for target in targets:
            await _preview_target(runtime, target, has_schema=has_schema)
    return 0


async def _preview_target(runtime: Runtime, target: TargetSettings, *, has_schema: bool) -> None:
    client = runtime.clients[target.name]
    latest = await client.get_latest_scan(per_page=1)
    status = latest.status_text or latest.status.value
    if not latest.id:
        click.secho(f"Target {target.name}: no scan yet ({status})", bold=True)
        click.echo("  No messages: the team has no scan to compare; `cspm-watch once` starts one.")
        return
    click.secho(f"Target {target.name}: latest scan {latest.id} ({status})", bold=True)
    collection = await collect_scan(
        client,
        target.name,
        latest,
        resource_detail_min_severity=target.resource_detail_min_severity,
    )
    states: list[FindingState] = []
    first_scan = True
    if has_schema:
        async with runtime.sessions() as session:
            states = await load_finding_states(session, target.name)
            first_scan = not states and await previous_completed_scan(session, target.name) is None

    diff = compute_diff(states, collection.scan)
    if not diff.changes_states:
        click.echo(f"  No messages: {diff.reason}.")
        return
    plan = decide_alerts(
        diff,
        policy=alert_policy_of(target),
        first_scan=first_scan,
        scan_created_at=latest.created_at,
        now=utc_now(),
        mutes=runtime.environment(target).mutes,
    )
    counts = ", ".join(f"{count} {kind.value}" for kind, count in diff.counts().items() if count)
    click.echo(f"  Diff against the stored history: {counts or 'nothing'}")
    _print_messages(runtime, target, plan.batches)


def _database_exists(database_url: str) -> bool:
    """Tell whether the database can hold a schema, without creating a SQLite file."""
    url = parse_database_url(database_url)
    if url.get_backend_name() != "sqlite":
        return True
    return Path(url.database or "").expanduser().is_file()


def _print_messages(
    runtime: Runtime, target: TargetSettings, batches: Sequence[AlertBatch]
) -> None:
    printed = 0
    for name in notifier_names(target, runtime.notifiers):
        notifier = runtime.notifiers[name]
        for batch in batches:
            for message in render_deliveries(batch, name, notifier, rendered_at=utc_now()):
                printed += 1
                click.secho(
                    f"\n--- to notifier {name}: {message.kind.value}, "
                    f"{message.item_count} items ---",
                    fg="cyan",
                )
                click.echo(json.dumps(json.loads(message.payload), indent=2, ensure_ascii=False))
    if not printed:
        click.echo("  No messages: nothing in this scan reaches an alert.")
