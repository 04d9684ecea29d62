"""Retention: old scan details go, finding states stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.diffing import DiffKind, StateStatus
from service.storage import (
    PruneResult,
    findings_of_scan,
    get_scan,
    load_finding_states,
    prune_scan_details,
    record_scan_started,
)
from tests.storage.builders import TARGET, collected, collected_scan, run_cycle
from tests.storage.conftest import TestDatabase

DAY_1 = datetime(2026, 5, 1, 6, 0, tzinfo=UTC)


async def prune(
    database: TestDatabase, older_than: datetime, max_scans: int | None = None
) -> PruneResult:
    async with database.sessions.begin() as session:
        return await prune_scan_details(session, older_than=older_than, max_scans=max_scans)


async def test_prune_scan_details_removes_only_old(database: TestDatabase) -> None:
    await run_cycle(database, collected_scan("old", collected("r1", resources=[1, 2])), DAY_1)
    await run_cycle(
        database,
        collected_scan("recent", collected("r1", resources=[1])),
        DAY_1 + timedelta(days=40),
    )

    result = await prune(database, DAY_1 + timedelta(days=30))

    assert (result.scans, result.findings, result.resources) == (1, 1, 2)
    async with database.sessions() as session:
        old = await get_scan(session, "old")
        recent = await get_scan(session, "recent")
        assert old is not None
        assert recent is not None
        assert await findings_of_scan(session, old.id) == []
        assert len(await findings_of_scan(session, recent.id)) == 1
        states = await load_finding_states(session, TARGET)
    assert old.details_pruned_at is not None
    assert recent.details_pruned_at is None
    assert len(states) == 2


async def test_prune_scan_details_skips_running_scans(database: TestDatabase) -> None:
    async with database.sessions.begin() as session:
        await record_scan_started(session, target=TARGET, scan_id="running", requested_at=DAY_1)

    result = await prune(database, DAY_1 + timedelta(days=1))

    assert result.scans == 0


async def test_prune_scan_details_twice_prunes_once(database: TestDatabase) -> None:
    await run_cycle(database, collected_scan("old", collected("r1")), DAY_1)
    cutoff = DAY_1 + timedelta(days=1)

    first = await prune(database, cutoff)
    second = await prune(database, cutoff)

    assert first.scans == 1
    assert second.scans == 0


async def test_finding_returns_after_pruning_not_new(database: TestDatabase) -> None:
    await run_cycle(
        database,
        collected_scan("s1", collected("r1", resources=[1]), collected("r2", resources=[2])),
        DAY_1,
    )
    await run_cycle(database, collected_scan("s2", collected("r2", resources=[2])), DAY_1)
    await prune(database, DAY_1 + timedelta(days=1))

    diff = await run_cycle(
        database,
        collected_scan("s3", collected("r1", resources=[1]), collected("r2", resources=[2])),
        DAY_1 + timedelta(days=2),
    )

    kinds = {entry.fingerprint.rule_uuid: entry.kind for entry in diff.entries}
    assert kinds == {"r1": DiffKind.REOPENED, "r2": DiffKind.UNCHANGED}
    async with database.sessions() as session:
        states = await load_finding_states(session, TARGET)
    assert {state.status for state in states} == {StateStatus.OPEN}
    assert all(state.first_seen_at == DAY_1 for state in states)


async def test_prune_scan_details_max_scans_oldest_first(database: TestDatabase) -> None:
    for day in range(3):
        scan = collected_scan(f"s{day}", collected("r1", resources=[1]))
        await run_cycle(database, scan, DAY_1 + timedelta(days=day))
    cutoff = DAY_1 + timedelta(days=10)

    first = await prune(database, cutoff, max_scans=2)
    rest = await prune(database, cutoff, max_scans=2)

    assert (first.scans, first.findings, first.resources) == (2, 2, 2)
    assert rest.scans == 1
    async with database.sessions() as session:
        newest = await get_scan(session, "s2")
    assert newest is not None
    assert newest.details_pruned_at is not None
