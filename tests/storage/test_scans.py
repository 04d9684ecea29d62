"""Scans: record, update, find, store and read back, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.digitalocean.models import ScanStatus, Severity
from service.errors import StorageError
from service.storage import (
    find_resumable_scan,
    finding_from_record,
    findings_of_scan,
    get_scan,
    list_scans,
    load_collected_scan,
    previous_completed_scan,
    record_scan_started,
    resources_of_finding,
    store_scan_result,
    update_scan_status,
)
from service.storage.tables import ScanRecord
from tests.storage.builders import TARGET, collected, collected_scan, droplet, finding
from tests.storage.conftest import TestDatabase

REQUESTED_AT = datetime(2026, 5, 1, 6, 0, tzinfo=UTC)


async def record(
    database: TestDatabase,
    scan_id: str,
    *,
    target: str = TARGET,
    requested_at: datetime = REQUESTED_AT,
) -> ScanRecord:
    async with database.sessions.begin() as session:
        return await record_scan_started(
            session, target=target, scan_id=scan_id, requested_at=requested_at
        )


async def finish(
    database: TestDatabase, scan: ScanRecord, status: ScanStatus, *, complete: bool
) -> None:
    async with database.sessions.begin() as session:
        await update_scan_status(session, scan.id, status)
        await store_scan_result(
            session,
            scan.id,
            collected_scan(scan.scan_id, status=status, complete=complete),
            collected_at=REQUESTED_AT,
        )


async def test_record_scan_started_readable_after_commit(database: TestDatabase) -> None:
    async with database.sessions.begin() as session:
        scan = await record_scan_started(
            session, target=TARGET, scan_id="s1", requested_at=REQUESTED_AT
        )
    # The session has committed and closed; the attributes are still loaded.

    assert scan.id > 0
    assert scan.scan_id == "s1"
    assert scan.scan_status is ScanStatus.IN_PROGRESS
    assert scan.requested_at == REQUESTED_AT
    assert scan.finished_at is None
    assert scan.poll_count == 0


async def test_get_scan_readable_after_session_closed(database: TestDatabase) -> None:
    await record(database, "s1")

    async with database.sessions() as session:
        scan = await get_scan(session, "s1")
        await session.commit()

    assert scan is not None
    assert scan.target == TARGET
    assert scan.updated_at.tzinfo is UTC


async def test_record_scan_started_twice_returns_first_row(database: TestDatabase) -> None:
    first = await record(database, "s1")

    again = await record(database, "s1", requested_at=REQUESTED_AT + timedelta(minutes=5))

    assert again.id == first.id
    assert again.requested_at == REQUESTED_AT


async def test_update_scan_status_sets_given_fields(database: TestDatabase) -> None:
    scan = await record(database, "s1")
    created_at = REQUESTED_AT + timedelta(seconds=2)

    async with database.sessions.begin() as session:
        await update_scan_status(
            session,
            scan.id,
            ScanStatus.IN_PROGRESS,
            status_text="running",
            created_at=created_at,
            poll_count=3,
            requests_made=5,
        )
    async with database.sessions() as session:
        updated = await session.get(ScanRecord, scan.id)

    assert updated is not None
    assert updated.status_text == "running"
    assert updated.created_at == created_at
    assert updated.poll_count == 3
    assert updated.requests_made == 5
    assert updated.finished_at is None
    assert updated.error is None


async def test_update_scan_status_terminal_keeps_first_finish(database: TestDatabase) -> None:
    scan = await record(database, "s1")

    async with database.sessions.begin() as session:
        await update_scan_status(session, scan.id, ScanStatus.FAILED, error="scan failed")
    async with database.sessions() as session:
        first = await session.get(ScanRecord, scan.id)
    async with database.sessions.begin() as session:
        await update_scan_status(session, scan.id, ScanStatus.FAILED)
    async with database.sessions() as session:
        second = await session.get(ScanRecord, scan.id)

    assert first is not None
    assert second is not None
    assert first.finished_at is not None
    assert first.finished_at.tzinfo is UTC
    assert second.finished_at == first.finished_at
    assert second.error == "scan failed"


async def test_update_scan_status_unknown_row_raises(database: TestDatabase) -> None:
    async with database.sessions() as session:
        with pytest.raises(StorageError, match="no scan with row id 999"):
            await update_scan_status(session, 999, ScanStatus.COMPLETED)


async def test_find_resumable_scan_running_within_deadline(database: TestDatabase) -> None:
    await record(database, "old", requested_at=REQUESTED_AT - timedelta(hours=2))
    done = await record(database, "done", requested_at=REQUESTED_AT + timedelta(minutes=1))
    await record(database, "running", requested_at=REQUESTED_AT)
    await record(database, "other", target="staging", requested_at=REQUESTED_AT)
    async with database.sessions.begin() as session:
        await update_scan_status(session, done.id, ScanStatus.COMPLETED)

    async with database.sessions() as session:
        found = await find_resumable_scan(session, TARGET, REQUESTED_AT - timedelta(hours=1))

    assert found is not None
    assert found.scan_id == "running"


async def test_find_resumable_scan_unknown_status_is_running(database: TestDatabase) -> None:
    scan = await record(database, "s1")
    async with database.sessions.begin() as session:
        await update_scan_status(session, scan.id, ScanStatus.UNKNOWN, status_text="QUEUED")

    async with database.sessions() as session:
        found = await find_resumable_scan(session, TARGET, REQUESTED_AT)

    assert found is not None
    assert found.status_text == "QUEUED"


async def test_previous_completed_scan_skips_incomplete(database: TestDatabase) -> None:
    complete = await record(database, "complete", requested_at=REQUESTED_AT)
    partial = await record(database, "partial", requested_at=REQUESTED_AT + timedelta(hours=1))
    failed = await record(database, "failed", requested_at=REQUESTED_AT + timedelta(hours=2))
    await finish(database, complete, ScanStatus.COMPLETED, complete=True)
    await finish(database, partial, ScanStatus.COMPLETED, complete=False)
    await finish(database, failed, ScanStatus.FAILED, complete=True)

    async with database.sessions() as session:
        previous = await previous_completed_scan(session, TARGET)
        before_first = await previous_completed_scan(session, TARGET, before_row_id=complete.id)

    assert previous is not None
    assert previous.scan_id == "complete"
    assert before_first is None


async def test_list_scans_filters_target_and_status(database: TestDatabase) -> None:
    first = await record(database, "s1")
    await record(database, "s2", requested_at=REQUESTED_AT + timedelta(hours=1))
    await record(database, "s3", target="staging")
    await finish(database, first, ScanStatus.COMPLETED, complete=True)

    async with database.sessions() as session:
        of_target = await list_scans(session, target=TARGET)
        completed = await list_scans(session, status=ScanStatus.COMPLETED)
        limited = await list_scans(session, limit=1)

    assert [scan.scan_id for scan in of_target] == ["s2", "s1"]
    assert [scan.scan_id for scan in completed] == ["s1"]
    assert [scan.scan_id for scan in limited] == ["s2"]


async def test_store_scan_result_round_trip(database: TestDatabase) -> None:
    scan = await record(database, "s1")
    stored = collected_scan(
        "s1",
        collected("r-low", "LOW"),
        collected("r-critical", "CRITICAL", resources=[1, 2, 3]),
        collected("r-high", "HIGH", resources=[]),
    )

    async with database.sessions.begin() as session:
        details = await store_scan_result(
            session, scan.id, stored, collected_at=REQUESTED_AT, problems=["page 2 fell short"]
        )
    async with database.sessions() as session:
        loaded = await load_collected_scan(session, scan.id)
        row = await session.get(ScanRecord, scan.id)

    assert details.findings_count == 3
    assert details.resources_count == 3
    assert row is not None
    assert row.scan_status is ScanStatus.COMPLETED
    assert row.collection_complete
    assert row.collection_problems == ["page 2 fell short"]
    assert (row.findings_count, row.resources_count) == (3, 3)
    by_rule = {item.finding.rule_uuid: item for item in loaded.findings}
    assert by_rule["r-critical"].finding == finding("r-critical", "CRITICAL", count=3)
    assert by_rule["r-critical"].resources == [droplet(1), droplet(2), droplet(3)]
    assert by_rule["r-low"].resources is None
    assert by_rule["r-high"].resources == []


async def test_findings_of_scan_most_severe_first(database: TestDatabase) -> None:
    scan = await record(database, "s1")
    async with database.sessions.begin() as session:
        await store_scan_result(
            session,
            scan.id,
            collected_scan(
                "s1", collected("b", "LOW"), collected("c", "CRITICAL"), collected("a", "HIGH")
            ),
            collected_at=REQUESTED_AT,
        )

    async with database.sessions() as session:
        every = await findings_of_scan(session, scan.id)
        serious = await findings_of_scan(session, scan.id, min_severity=Severity.HIGH)

    assert [record.rule_uuid for record in every] == ["c", "a", "b"]
    assert [record.rule_uuid for record in serious] == ["c", "a"]
    assert finding_from_record(every[0]).mitigation_steps == finding("c").mitigation_steps


async def test_store_scan_result_twice_replaces_details(database: TestDatabase) -> None:
    scan = await record(database, "s1")
    async with database.sessions.begin() as session:
        await store_scan_result(
            session,
            scan.id,
            collected_scan("s1", collected("r1", resources=[1, 2])),
            collected_at=REQUESTED_AT,
        )

    async with database.sessions.begin() as session:
        await store_scan_result(
            session,
            scan.id,
            collected_scan("s1", collected("r2", resources=[3])),
            collected_at=REQUESTED_AT,
        )
    async with database.sessions() as session:
        findings = await findings_of_scan(session, scan.id)
        resources = await resources_of_finding(session, findings[0].id)

    assert [record.rule_uuid for record in findings] == ["r2"]
    assert [resource.urn for resource in resources] == ["do:droplet:3"]


async def test_store_scan_result_large_resource_list(database: TestDatabase) -> None:
    scan = await record(database, "s1")
    numbers = list(range(12_345))

    async with database.sessions.begin() as session:
        details = await store_scan_result(
            session,
            scan.id,
            collected_scan("s1", collected("r1", resources=numbers), collected("r2")),
            collected_at=REQUESTED_AT,
        )
    async with database.sessions() as session:
        loaded = await load_collected_scan(session, scan.id)

    assert details.resources_count == len(numbers)
    resources = next(item.resources for item in loaded.findings if item.resources)
    assert resources is not None
    assert [resource.urn for resource in resources] == [f"do:droplet:{n}" for n in numbers]
