"""`cspm-watch diff`: how one stored scan of a target differs from another.

The older scan's findings become open finding states, and the newer scan is diffed against
them with the same `compute_diff` that cycles use. So the entries mean what alerts mean, with
one difference: a two-scan diff has no history before the older scan, so nothing can be
REOPENED.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service.commands.common import CommandError, open_database, pick_target
from service.commands.output import OutputFormat, format_time, print_json, print_table
from service.commands.scans import EXIT_OK
from service.config import Settings
from service.diffing import Diff, DiffEntry, DiffKind, compute_diff, states_of_scan
from service.digitalocean.models import ScanStatus
from service.storage import ScanRecord, get_scan, load_collected_scan, previous_completed_scan

# The entry kinds that `diff` prints, in this order; UNCHANGED entries are only counted.
SHOWN_KINDS = (DiffKind.NEW, DiffKind.REOPENED, DiffKind.ESCALATED, DiffKind.RESOLVED)


async def diff_stored_scans(
    settings: Settings,
    target_name: str | None,
    scan_ids: Sequence[str],
    output: OutputFormat,
) -> int:
    """Print the diff between two stored scans: `scan_ids` (older, newer), or when empty the
    target's last two COMPLETED scans with complete collections."""
    async with open_database(settings) as sessions, sessions() as session:
        if scan_ids:
            old, new = await _named_scans(session, settings, target_name, scan_ids)
        else:
            old, new = await _last_two_scans(session, pick_target(settings, target_name).name)
        old_scan = await load_collected_scan(session, old.id)
        new_scan = await load_collected_scan(session, new.id)

    seen_at = old.finished_at or old.requested_at
    diff = compute_diff(states_of_scan(old_scan, seen_at), new_scan)
    _print_diff(old, new, diff, output)
    return EXIT_OK


async def _last_two_scans(session: AsyncSession, target: str) -> tuple[ScanRecord, ScanRecord]:
    new = await previous_completed_scan(session, target)
    old = (
        None
        if new is None
        else await previous_completed_scan(session, target, before_row_id=new.id)
    )
    if new is None or old is None:
        count = 0 if new is None else 1
        raise CommandError(
            f"target {target} has {count} stored completed scan(s) with a complete collection, "
            "and a diff needs two: run `cspm-watch once` to store another, or name two scans"
        )
    _require_diffable(old)
    _require_diffable(new)
    return old, new


async def _named_scans(
    session: AsyncSession, settings: Settings, target_name: str | None, scan_ids: Sequence[str]
) -> tuple[ScanRecord, ScanRecord]:
    target = settings.target(target_name).name if target_name is not None else None
    records = []
    for scan_id in scan_ids:
        record = await get_scan(session, scan_id, target=target)
        if record is None:
            raise CommandError(
                f"scan {scan_id} is not stored in the database: list the stored scans with "
                "`cspm-watch scans list --stored`"
            )
        _require_diffable(record)
        records.append(record)
    old, new = records
    if old.target != new.target:
        raise CommandError(
            f"scan {old.scan_id} belongs to target {old.target} and scan {new.scan_id} to "
            f"target {new.target}: name two scans of the same target"
        )
    return old, new


def _require_diffable(record: ScanRecord) -> None:
    """Raise CommandError unless the scan completed and its details are all stored."""
    if record.details_pruned_at is not None:
        raise CommandError(
            f"the findings of scan {record.scan_id} were deleted on "
            f"{format_time(record.details_pruned_at)} after retention.scan_details_days, so "
            "it cannot be diffed: name two newer scans"
        )
    if record.scan_status is not ScanStatus.COMPLETED:
        raise CommandError(
            f"scan {record.scan_id} ended {record.status}, and only COMPLETED scans can be "
            "diffed: name another scan"
        )
    if not record.collection_complete:
        raise CommandError(
            f"the collection of scan {record.scan_id} is incomplete, so a diff would report "
            "findings as new or resolved that are not: name another scan"
        )


def _print_diff(old: ScanRecord, new: ScanRecord, diff: Diff, output: OutputFormat) -> None:
    counts = diff.counts()
    entries = sorted(
        (entry for entry in diff.entries if entry.kind in SHOWN_KINDS), key=_entry_order
    )
    if output is OutputFormat.JSON:
        print_json(
            {
                "target": new.target,
                "old_scan_id": old.scan_id,
                "new_scan_id": new.scan_id,
                "counts": {kind.value: counts[kind] for kind in DiffKind},
                "entries": [_entry_json(entry) for entry in entries],
            }
        )
        return
    summary = ", ".join(f"{counts[kind]} {kind.value}" for kind in DiffKind)
    print_table(
        ["Change", "Severity", "Rule", "Resource URN", "Resource Name"],
        [
            (
                entry.kind.value,
                _severity_text(entry),
                entry.rule_name,
                entry.resource.urn if entry.resource else "(rule level)",
                entry.resource.name if entry.resource else "",
            )
            for entry in entries
        ],
        title=(f"Target {new.target}: scan {old.scan_id} to scan {new.scan_id} ({summary})"),
        empty="No finding is new, escalated or resolved between the two scans.",
    )


def _entry_order(entry: DiffEntry) -> tuple[int, int, str, str]:
    resource_urn = entry.resource.urn if entry.resource else ""
    return (SHOWN_KINDS.index(entry.kind), -entry.severity.rank, entry.rule_name, resource_urn)


def _severity_text(entry: DiffEntry) -> str:
    if entry.kind is DiffKind.ESCALATED and entry.severity_before is not None:
        return f"{entry.severity.value} (was {entry.severity_before.value})"
    return entry.severity.value


def _entry_json(entry: DiffEntry) -> dict[str, Any]:
    resource = entry.resource
    return {
        "kind": entry.kind.value,
        "severity": entry.severity.value,
        "severity_before": entry.severity_before.value if entry.severity_before else None,
        "rule_uuid": entry.fingerprint.rule_uuid,
        "rule_name": entry.rule_name,
        "resource_urn": resource.urn if resource else None,
        "resource_name": resource.name if resource else None,
        "resource_type": resource.type if resource else None,
    }
