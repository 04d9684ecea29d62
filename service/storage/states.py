"""Finding states: load them for the diff and apply a diff to them.

The functions never commit: the cycle applies the diff in the transaction that stores the
scan and enqueues its deliveries.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.diffing import (
    Diff,
    DiffEntry,
    DiffKind,
    FindingState,
    Fingerprint,
    StateStatus,
)
from service.digitalocean.models import Severity
from service.storage.scans import utc_now
from service.storage.tables import finding_states_table, scans_table
from service.storage.types import ensure_utc

# Rows per INSERT or UPDATE batch, as for affected resources.
STATE_BATCH_SIZE = 5_000

_states = finding_states_table
_scans = scans_table

_LOADED_COLUMNS = (
    _states.c.id,
    _states.c.rule_uuid,
    _states.c.resource_urn,
    _states.c.status,
    _states.c.severity,
    _states.c.previous_severity,
    _states.c.first_seen_at,
    _states.c.first_seen_scan_row_id,
    _states.c.last_seen_at,
    _states.c.resolved_at,
    _states.c.times_reopened,
    _states.c.rule_name,
    _states.c.resource_name,
    _states.c.resource_type,
    _states.c.last_alerted_at,
)


async def load_finding_states(session: AsyncSession, target: str) -> list[FindingState]:
    """Return every finding state of the target (open, resolved and superseded).

    Rows are streamed in batches, and the texts that repeat across rows (rule UUIDs and
    names, resource types) are shared, because a target can have 100,000 states or more.
    """
    statement = select(*_LOADED_COLUMNS).where(_states.c.target == target)
    shared: dict[str, str] = {}
    states: list[FindingState] = []
    result = await session.stream(statement, execution_options={"yield_per": STATE_BATCH_SIZE})
    async for rows in result.partitions():
        states.extend(_state_of_row(target, row, shared) for row in rows)
    return states


_STATUSES = {status.value: status for status in StateStatus}
_SEVERITIES = {severity.value: severity for severity in Severity}


def _state_of_row(target: str, row: Any, shared: dict[str, str]) -> FindingState:
    previous_severity = row.previous_severity
    return FindingState(
        fingerprint=Fingerprint(
            target, shared.setdefault(row.rule_uuid, row.rule_uuid), row.resource_urn
        ),
        status=_STATUSES[row.status],
        severity=_SEVERITIES[row.severity],
        previous_severity=_SEVERITIES[previous_severity] if previous_severity else None,
        first_seen_at=row.first_seen_at,
        first_seen_scan_row_id=row.first_seen_scan_row_id,
        last_seen_at=row.last_seen_at,
        resolved_at=row.resolved_at,
        times_reopened=row.times_reopened,
        rule_name=shared.setdefault(row.rule_name, row.rule_name),
        resource_name=row.resource_name,
        resource_type=shared.setdefault(row.resource_type, row.resource_type),
        last_alerted_at=row.last_alerted_at,
        state_id=row.id,
    )


async def apply_diff(
    session: AsyncSession, diff: Diff, *, scan_row_id: int, seen_at: datetime
) -> None:
    """Write the diff to the finding states and its counts to the scan row.

    `seen_at` becomes the last sighting of every state this scan keeps open, the first
    sighting of new ones and the resolution time of resolved ones. A diff that does not
    change states (failed scan, incomplete collection) only records that on the scan row.
    The states must have been loaded in this transaction, because updates go by row id.
    """
    seen_at = ensure_utc(seen_at, "seen_at")
    if diff.changes_states:
        await _insert_states(session, diff, scan_row_id, seen_at)
        await _update_states(session, diff, seen_at)
        await _mark_last_seen(session, diff.target, scan_row_id, seen_at)
    await _record_counts(session, diff, scan_row_id)


async def record_alerts(
    session: AsyncSession,
    scan_row_id: int,
    fingerprints: Collection[Fingerprint],
    *,
    alerted_at: datetime,
) -> None:
    """Record that the scan raised alerts for `fingerprints`: set the scan's alerted count and
    each state's `last_alerted_at`."""
    alerted_at = ensure_utc(alerted_at, "alerted_at")
    await session.execute(
        update(_scans).where(_scans.c.id == scan_row_id).values(alerted_count=len(fingerprints))
    )
    if not fingerprints:
        return
    statement = (
        update(_states)
        .where(
            _states.c.target == bindparam("b_target"),
            _states.c.rule_uuid == bindparam("b_rule_uuid"),
            _states.c.resource_urn == bindparam("b_resource_urn"),
        )
        .values(last_alerted_at=alerted_at)
    )
    rows = [
        {"b_target": f.target, "b_rule_uuid": f.rule_uuid, "b_resource_urn": f.resource_urn}
        for f in fingerprints
    ]
    for batch in _batches(rows):
        await session.execute(statement, batch)


async def _insert_states(
    session: AsyncSession, diff: Diff, scan_row_id: int, seen_at: datetime
) -> None:
    """Insert the states of fingerprints that had none: NEW ones and adopted ones."""
    rows = [
        _new_state_row(entry, scan_row_id, seen_at)
        for entry in diff.entries
        if entry.state is None and entry.kind is not DiffKind.RESOLVED
    ]
    for batch in _batches(rows):
        await session.execute(insert(_states), batch)


def _new_state_row(entry: DiffEntry, scan_row_id: int, seen_at: datetime) -> dict[str, Any]:
    inherited = entry.inherited_from
    return {
        "target": entry.fingerprint.target,
        "rule_uuid": entry.fingerprint.rule_uuid,
        "resource_urn": entry.fingerprint.resource_urn,
        "status": StateStatus.OPEN.value,
        "severity": entry.severity.value,
        "previous_severity": entry.severity_before.value if entry.severity_before else None,
        "rule_name": entry.rule_name,
        "resource_name": entry.resource.name if entry.resource else "",
        "resource_type": entry.resource.type if entry.resource else "",
        "first_seen_at": inherited.first_seen_at if inherited else seen_at,
        "first_seen_scan_row_id": inherited.first_seen_scan_row_id if inherited else scan_row_id,
        "last_seen_at": seen_at,
        "last_seen_scan_row_id": scan_row_id,
        "resolved_at": None,
        "times_reopened": inherited.times_reopened if inherited else 0,
        "last_alerted_at": inherited.last_alerted_at if inherited else None,
    }


async def _update_states(session: AsyncSession, diff: Diff, seen_at: datetime) -> None:
    """Update the stored states that changed beyond their last sighting."""
    resolved: list[dict[str, Any]] = []
    reopened: list[dict[str, Any]] = []
    changed: list[dict[str, Any]] = []
    for entry in diff.entries:
        state = entry.state
        if state is None:
            continue
        if entry.kind is DiffKind.RESOLVED:
            resolved.append({"b_id": state.state_id, "b_status": StateStatus.RESOLVED.value})
        elif entry.kind is DiffKind.REOPENED:
            reopened.append(_reopened_row(entry, state))
        elif _changed_beyond_sighting(entry, state):
            changed.append(_changed_row(entry, state))
    superseded = [
        {"b_id": state.state_id, "b_status": StateStatus.SUPERSEDED.value}
        for state in diff.superseded
    ]

    close = (
        update(_states)
        .where(_states.c.id == bindparam("b_id"))
        .values(status=bindparam("b_status"), resolved_at=seen_at)
    )
    for batch in _batches(resolved + superseded):
        await session.execute(close, batch)
    for batch in _batches(reopened):
        await session.execute(_update_by_id(reopened[0]), batch)
    for batch in _batches(changed):
        await session.execute(_update_by_id(changed[0]), batch)


def _reopened_row(entry: DiffEntry, state: FindingState) -> dict[str, Any]:
    return {
        "b_id": state.state_id,
        "status": StateStatus.OPEN.value,
        "resolved_at": None,
        "times_reopened": state.times_reopened + 1,
        **_description_values(entry, state),
    }


def _changed_row(entry: DiffEntry, state: FindingState) -> dict[str, Any]:
    return {"b_id": state.state_id, **_description_values(entry, state)}


def _description_values(entry: DiffEntry, state: FindingState) -> dict[str, Any]:
    """Severity and names as this scan reports them."""
    severity_changed = entry.severity is not state.severity
    previous = state.severity if severity_changed else state.previous_severity
    resource = entry.resource
    return {
        "severity": entry.severity.value,
        "previous_severity": previous.value if previous else None,
        "rule_name": entry.rule_name,
        "resource_name": resource.name if resource else state.resource_name,
        "resource_type": resource.type if resource else state.resource_type,
    }


def _changed_beyond_sighting(entry: DiffEntry, state: FindingState) -> bool:
    resource = entry.resource
    return (
        entry.severity is not state.severity
        or entry.rule_name != state.rule_name
        or (
            resource is not None
            and (resource.name, resource.type)
            != (
                state.resource_name,
                state.resource_type,
            )
        )
    )


def _update_by_id(sample_row: dict[str, Any]) -> Any:
    """Build an UPDATE by row id that sets every key of `sample_row` except the id."""
    columns = [key for key in sample_row if key != "b_id"]
    return (
        update(_states)
        .where(_states.c.id == bindparam("b_id"))
        .values({column: bindparam(column) for column in columns})
    )


async def _mark_last_seen(
    session: AsyncSession, target: str, scan_row_id: int, seen_at: datetime
) -> None:
    # After the inserts and updates above, exactly the states this scan saw are open, so one
    # statement records the sighting for all of them instead of one UPDATE per state. Rows
    # that the inserts and updates already gave this scan are left alone: rewriting them cost
    # about 1.4 s for 50,000 new states on PostgreSQL.
    await session.execute(
        update(_states)
        .where(
            _states.c.target == target,
            _states.c.status == StateStatus.OPEN.value,
            _states.c.last_seen_scan_row_id.is_distinct_from(scan_row_id),
        )
        .values(last_seen_at=seen_at, last_seen_scan_row_id=scan_row_id)
    )


async def _record_counts(session: AsyncSession, diff: Diff, scan_row_id: int) -> None:
    counts = diff.counts()
    await session.execute(
        update(_scans)
        .where(_scans.c.id == scan_row_id)
        .values(
            states_updated=diff.changes_states,
            new_count=counts[DiffKind.NEW],
            reopened_count=counts[DiffKind.REOPENED],
            escalated_count=counts[DiffKind.ESCALATED],
            resolved_count=counts[DiffKind.RESOLVED],
            unchanged_count=counts[DiffKind.UNCHANGED],
            updated_at=utc_now(),
        )
    )


def _batches(rows: Sequence[dict[str, Any]]) -> Iterator[Sequence[dict[str, Any]]]:
    for start in range(0, len(rows), STATE_BATCH_SIZE):
        yield rows[start : start + STATE_BATCH_SIZE]
