"""Applying diffs to finding states, in the transaction that stores the scan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from service.diffing import (
    CollectedScan,
    DiffKind,
    FindingState,
    StateStatus,
    compute_diff,
    fingerprint_of,
)
from service.digitalocean.models import ScanStatus, Severity
from service.storage import (
    apply_diff,
    get_scan,
    load_finding_states,
    record_alerts,
    record_scan_started,
    store_scan_result,
)
from service.storage.tables import FindingRecord, FindingStateRecord, ScanRecord
from tests.storage.builders import TARGET, collected, collected_scan, run_cycle
from tests.storage.conftest import TestDatabase

DAY_1 = datetime(2026, 5, 1, 6, 0, tzinfo=UTC)
DAY_2 = DAY_1 + timedelta(days=1)
DAY_3 = DAY_1 + timedelta(days=2)


async def states_by_key(database: TestDatabase) -> dict[str, FindingState]:
    async with database.sessions() as session:
        states = await load_finding_states(session, TARGET)
    return {
        f"{s.fingerprint.rule_uuid}@{s.fingerprint.resource_urn.removeprefix('do:droplet:')}"
        if s.fingerprint.resource_urn
        else s.fingerprint.rule_uuid: s
        for s in states
    }


async def test_apply_diff_first_scan_inserts_open_states(database: TestDatabase) -> None:
    diff = await run_cycle(
        database, collected_scan("s1", collected("r1"), collected("r2", resources=[1])), DAY_1
    )

    states = await states_by_key(database)
    assert diff.counts()[DiffKind.NEW] == 2
    assert set(states) == {"r1", "r2@1"}
    state = states["r2@1"]
    assert state.status is StateStatus.OPEN
    assert state.first_seen_at == DAY_1
    assert state.last_seen_at == DAY_1
    assert state.resource_name == "web-1"
    assert state.times_reopened == 0


async def test_apply_diff_resolves_then_reopens(database: TestDatabase) -> None:
    await run_cycle(database, collected_scan("s1", collected("r1", resources=[1])), DAY_1)
    resolved = await run_cycle(database, collected_scan("s2"), DAY_2)
    after_resolve = await states_by_key(database)
    reopened = await run_cycle(
        database, collected_scan("s3", collected("r1", resources=[1])), DAY_3
    )
    after_reopen = await states_by_key(database)

    assert resolved.counts()[DiffKind.RESOLVED] == 1
    assert after_resolve["r1@1"].status is StateStatus.RESOLVED
    assert after_resolve["r1@1"].resolved_at == DAY_2
    assert after_resolve["r1@1"].last_seen_at == DAY_1
    assert reopened.counts()[DiffKind.REOPENED] == 1
    state = after_reopen["r1@1"]
    assert state.status is StateStatus.OPEN
    assert state.resolved_at is None
    assert state.times_reopened == 1
    assert state.first_seen_at == DAY_1
    assert state.last_seen_at == DAY_3


async def test_apply_diff_severity_changes_stored(database: TestDatabase) -> None:
    await run_cycle(database, collected_scan("s1", collected("r1", "MEDIUM")), DAY_1)
    escalated = await run_cycle(database, collected_scan("s2", collected("r1", "HIGH")), DAY_2)
    after_rise = await states_by_key(database)
    dropped = await run_cycle(database, collected_scan("s3", collected("r1", "LOW")), DAY_3)
    after_drop = await states_by_key(database)

    assert escalated.counts()[DiffKind.ESCALATED] == 1
    assert after_rise["r1"].severity is Severity.HIGH
    assert after_rise["r1"].previous_severity is Severity.MEDIUM
    assert dropped.counts()[DiffKind.UNCHANGED] == 1
    assert after_drop["r1"].severity is Severity.LOW
    assert after_drop["r1"].previous_severity is Severity.HIGH


async def test_apply_diff_rule_level_adopted_by_resources(database: TestDatabase) -> None:
    await run_cycle(database, collected_scan("s1", collected("r1")), DAY_1)
    diff = await run_cycle(database, collected_scan("s2", collected("r1", resources=[1, 2])), DAY_2)
    states = await states_by_key(database)

    assert diff.counts() == {
        DiffKind.NEW: 0,
        DiffKind.REOPENED: 0,
        DiffKind.ESCALATED: 0,
        DiffKind.RESOLVED: 0,
        DiffKind.UNCHANGED: 2,
    }
    assert states["r1"].status is StateStatus.SUPERSEDED
    for key in ("r1@1", "r1@2"):
        assert states[key].status is StateStatus.OPEN
        assert states[key].first_seen_at == DAY_1
        assert states[key].last_seen_at == DAY_2


async def test_apply_diff_resources_kept_at_rule_level(database: TestDatabase) -> None:
    await run_cycle(database, collected_scan("s1", collected("r1", resources=[1, 2])), DAY_1)
    diff = await run_cycle(database, collected_scan("s2", collected("r1")), DAY_2)
    states = await states_by_key(database)

    assert diff.counts()[DiffKind.UNCHANGED] == 2
    assert set(states) == {"r1@1", "r1@2"}
    assert states["r1@1"].last_seen_at == DAY_2


@pytest.mark.parametrize(
    ("status", "complete"), [(ScanStatus.FAILED, True), (ScanStatus.COMPLETED, False)]
)
async def test_apply_diff_unusable_scan_changes_no_state(
    database: TestDatabase, status: ScanStatus, complete: bool
) -> None:
    await run_cycle(database, collected_scan("s1", collected("r1")), DAY_1)
    before = await states_by_key(database)

    diff = await run_cycle(
        database, collected_scan("s2", collected("r2"), status=status, complete=complete), DAY_2
    )

    assert not diff.changes_states
    assert await states_by_key(database) == before
    async with database.sessions() as session:
        scan = await get_scan(session, "s2")
    assert scan is not None
    assert not scan.states_updated
    assert scan.new_count == scan.resolved_count == 0


async def test_apply_diff_records_counts_on_scan(database: TestDatabase) -> None:
    await run_cycle(database, collected_scan("s1", collected("r1"), collected("r2")), DAY_1)
    await run_cycle(database, collected_scan("s2", collected("r2"), collected("r3")), DAY_2)

    async with database.sessions() as session:
        scan = await get_scan(session, "s2")

    assert scan is not None
    assert scan.states_updated
    assert (scan.new_count, scan.resolved_count, scan.unchanged_count) == (1, 1, 1)
    assert (scan.reopened_count, scan.escalated_count) == (0, 0)


async def store_and_crash(database: TestDatabase, scan: CollectedScan) -> None:
    async with database.sessions.begin() as session:
        row = await record_scan_started(session, target=TARGET, scan_id="s1", requested_at=DAY_1)
        await store_scan_result(session, row.id, scan, collected_at=DAY_1)
        diff = compute_diff(await load_finding_states(session, TARGET), scan)
        await apply_diff(session, diff, scan_row_id=row.id, seen_at=DAY_1)
        raise RuntimeError("crash before commit")


async def test_apply_diff_rolls_back_with_the_scan(database: TestDatabase) -> None:
    scan = collected_scan("s1", collected("r1", resources=[1]))

    with pytest.raises(RuntimeError, match="crash"):
        await store_and_crash(database, scan)

    async with database.sessions() as session:
        assert (await session.scalars(select(FindingStateRecord))).first() is None
        assert (await session.scalars(select(FindingRecord))).first() is None
        assert (await session.scalars(select(ScanRecord))).first() is None


async def test_record_alerts_sets_last_alerted_at(database: TestDatabase) -> None:
    await run_cycle(database, collected_scan("s1", collected("r1"), collected("r2")), DAY_1)
    alerted = [fingerprint_of(TARGET, "r1")]

    async with database.sessions.begin() as session:
        scan = await get_scan(session, "s1")
        assert scan is not None
        await record_alerts(session, scan.id, alerted, alerted_at=DAY_2)
    states = await states_by_key(database)
    async with database.sessions() as session:
        scan = await get_scan(session, "s1")

    assert states["r1"].last_alerted_at == DAY_2
    assert states["r2"].last_alerted_at is None
    assert scan is not None
    assert scan.alerted_count == 1


async def test_load_finding_states_only_of_target(database: TestDatabase) -> None:
    await run_cycle(database, collected_scan("s1", collected("r1")), DAY_1)
    await run_cycle(database, collected_scan("s2", collected("r2"), target="staging"), DAY_1)

    async with database.sessions() as session:
        staging = await load_finding_states(session, "staging")

    assert [state.fingerprint.rule_uuid for state in staging] == ["r2"]
