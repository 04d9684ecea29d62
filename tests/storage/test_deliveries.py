"""The outbox: deliveries are enqueued once per notifier and dedupe key."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from service.storage import DeliveryStatus, NewDelivery, enqueue_deliveries, prune_deliveries
from service.storage.tables import DeliveryRecord
from tests.storage.conftest import TestDatabase

CREATED_AT = datetime(2026, 5, 1, 6, 0, tzinfo=UTC)


def delivery(notifier: str = "security", dedupe_key: str = "s1:findings") -> NewDelivery:
    return NewDelivery(
        target="production",
        notifier=notifier,
        kind="findings",
        dedupe_key=dedupe_key,
        payload='{"text": "2 new HIGH findings"}',
        webhook_id=f"msg_{notifier}_{dedupe_key}",
    )


async def enqueue(database: TestDatabase, deliveries: list[NewDelivery]) -> int:
    async with database.sessions.begin() as session:
        return await enqueue_deliveries(session, deliveries, created_at=CREATED_AT)


async def test_enqueue_deliveries_inserts_pending(database: TestDatabase) -> None:
    later = CREATED_AT + timedelta(minutes=1)
    deferred = dataclasses.replace(delivery("soc"), next_attempt_at=later)
    inserted = await enqueue(database, [delivery(), deferred])

    async with database.sessions() as session:
        rows = (await session.scalars(select(DeliveryRecord).order_by(DeliveryRecord.id))).all()

    assert inserted == 2
    assert [row.status for row in rows] == [DeliveryStatus.PENDING.value] * 2
    assert [row.attempts for row in rows] == [0, 0]
    assert rows[0].next_attempt_at == CREATED_AT
    assert rows[1].next_attempt_at == later
    assert rows[0].payload == '{"text": "2 new HIGH findings"}'


async def test_enqueue_deliveries_repeated_key_skipped(database: TestDatabase) -> None:
    await enqueue(database, [delivery()])

    again = await enqueue(database, [delivery(), delivery("soc")])

    async with database.sessions() as session:
        rows = (await session.scalars(select(DeliveryRecord))).all()
    assert again == 1
    assert sorted(row.notifier for row in rows) == ["security", "soc"]


async def test_enqueue_deliveries_empty_list(database: TestDatabase) -> None:
    assert await enqueue(database, []) == 0


async def test_prune_deliveries_keeps_undelivered(database: TestDatabase) -> None:
    keys = {status: f"s1:{status.value}" for status in DeliveryStatus}
    await enqueue(database, [delivery(dedupe_key=key) for key in keys.values()])
    async with database.sessions.begin() as session:
        for status, key in keys.items():
            await session.execute(
                update(DeliveryRecord)
                .where(DeliveryRecord.dedupe_key == key)
                .values(status=status.value)
            )

    async with database.sessions.begin() as session:
        deleted = await prune_deliveries(session, older_than=CREATED_AT + timedelta(days=1))

    assert deleted == 2
    async with database.sessions() as session:
        left = set((await session.scalars(select(DeliveryRecord.status))).all())
    assert left == {DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value}


async def test_prune_deliveries_keeps_recent(database: TestDatabase) -> None:
    await enqueue(database, [delivery()])
    async with database.sessions.begin() as session:
        await session.execute(update(DeliveryRecord).values(status=DeliveryStatus.SENT.value))

    async with database.sessions.begin() as session:
        deleted = await prune_deliveries(session, older_than=CREATED_AT)

    assert deleted == 0
