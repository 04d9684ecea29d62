"""Helpers of the dispatcher tests: a fake clock, enqueueing rendered messages, reading rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.notifiers.base import OutboxMessage
from service.storage import NewDelivery, enqueue_deliveries
from service.storage.tables import DeliveryRecord


class FakeClock:
    """A UTC clock that moves only when advanced; `sleep` advances it instead of waiting."""

    def __init__(self, start: datetime):
        self.now = start
        self.slept_s: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    async def sleep(self, seconds: float) -> None:
        self.slept_s.append(seconds)
        self.advance(seconds)


async def enqueue(
    sessions: async_sessionmaker[AsyncSession],
    messages: Sequence[OutboxMessage],
    *,
    created_at: datetime,
) -> int:
    """Store rendered messages as pending deliveries, as the cycle does."""
    deliveries = [
        NewDelivery(
            target=message.target,
            notifier=message.notifier_name,
            kind=message.kind.value,
            dedupe_key=message.dedupe_key,
            payload=message.payload,
            webhook_id=message.webhook_id,
        )
        for message in messages
    ]
    async with sessions.begin() as session:
        return await enqueue_deliveries(session, deliveries, created_at=created_at)


async def delivery_rows(sessions: async_sessionmaker[AsyncSession]) -> list[DeliveryRecord]:
    async with sessions() as session:
        statement = select(DeliveryRecord).order_by(DeliveryRecord.id)
        return list((await session.scalars(statement)).all())
