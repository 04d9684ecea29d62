"""Datetimes are aware UTC on both databases, whatever offset they were stored with."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.exc import StatementError

from service.errors import StorageError
from service.storage import find_resumable_scan, get_scan, list_scans, record_scan_started
from service.storage.tables import LeaseRecord
from tests.storage.conftest import TestDatabase

ROUND_TRIPS = {
    "2026-06-19T13:26:43-08:00": "2026-06-19T21:26:43+00:00",
    "2025-12-04T00:00:00Z": "2025-12-04T00:00:00+00:00",
    "2026-03-29T02:30:00.123456+05:45": "2026-03-28T20:45:00.123456+00:00",
}


@pytest.mark.parametrize(("stored", "read"), ROUND_TRIPS.items(), ids=ROUND_TRIPS.keys())
async def test_datetime_round_trip_reads_utc(
    database: TestDatabase, stored: str, read: str
) -> None:
    value = datetime.fromisoformat(stored)
    async with database.sessions.begin() as session:
        await record_scan_started(
            session, target="t", scan_id="s1", requested_at=value, created_at=value
        )

    async with database.sessions() as session:
        scan = await get_scan(session, "s1")

    assert scan is not None
    assert scan.requested_at == value
    assert scan.requested_at.tzinfo is UTC
    assert scan.requested_at.isoformat() == read
    assert scan.created_at is not None
    assert scan.created_at.isoformat() == read


async def test_datetime_ordering_follows_instants(database: TestDatabase) -> None:
    # Wall-clock text order (10:00, 03:00, 23:30) differs from the order of the instants.
    requested = {
        "tokyo": "2026-01-01T10:00:00+09:00",  # 01:00 UTC
        "london": "2026-01-01T03:00:00+00:00",  # 03:00 UTC
        "brazil": "2025-12-31T23:30:00-02:00",  # 01:30 UTC
    }
    async with database.sessions.begin() as session:
        for scan_id, at in requested.items():
            await record_scan_started(
                session, target="t", scan_id=scan_id, requested_at=datetime.fromisoformat(at)
            )

    async with database.sessions() as session:
        scans = await list_scans(session, target="t")

    assert [scan.scan_id for scan in scans] == ["london", "brazil", "tokyo"]


async def test_datetime_comparison_with_other_offset(database: TestDatabase) -> None:
    async with database.sessions.begin() as session:
        await record_scan_started(
            session,
            target="t",
            scan_id="s1",
            requested_at=datetime.fromisoformat("2026-01-01T01:30:00+00:00"),
        )

    async with database.sessions() as session:
        before = await find_resumable_scan(
            session, "t", datetime.fromisoformat("2026-01-01T10:29:00+09:00")
        )
        after = await find_resumable_scan(
            session, "t", datetime.fromisoformat("2026-01-01T10:31:00+09:00")
        )

    assert before is not None
    assert after is None


async def test_naive_datetime_argument_raises(database: TestDatabase) -> None:
    async with database.sessions() as session:
        with pytest.raises(StorageError, match="requested_at is a naive datetime"):
            await record_scan_started(
                session, target="t", scan_id="s1", requested_at=datetime(2026, 1, 1)
            )


async def test_naive_datetime_column_value_raises(database: TestDatabase) -> None:
    lease = LeaseRecord(
        target="t",
        holder="worker-1",
        acquired_at=datetime(2026, 1, 1),
        expires_at=datetime(2026, 1, 1, 0, 5),
    )

    async with database.sessions() as session:
        session.add(lease)
        with pytest.raises(StatementError, match="naive datetime"):
            await session.flush()
