"""The outbox: deliveries enqueued in the transaction that updates the finding states."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from service.errors import StorageError
from service.storage.tables import deliveries_table
from service.storage.types import ensure_utc

_deliveries = deliveries_table


class DeliveryStatus(enum.Enum):
    """Delivery status: waiting, being sent, sent, or failed after its last attempt."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class NewDelivery:
    """A delivery to enqueue.

    `dedupe_key` identifies the alert (for example the scan id and the kind), so enqueueing
    the same key for the same notifier again is a no-op. `payload` is the rendered message
    body as JSON text. `next_attempt_at` defaults to the enqueue time.
    """

    target: str
    notifier: str
    kind: str
    dedupe_key: str
    payload: str
    webhook_id: str
    scan_row_id: int | None = None
    next_attempt_at: datetime | None = None


async def enqueue_deliveries(
    session: AsyncSession, deliveries: Sequence[NewDelivery], *, created_at: datetime
) -> int:
    """Insert the deliveries as pending and return how many were new.

    A delivery whose (notifier, dedupe_key) is already in the outbox is skipped, whatever its
    status, so a repeated cycle never sends the same alert twice.
    """
    created_at = ensure_utc(created_at, "created_at")
    if not deliveries:
        return 0
    rows = [_delivery_row(delivery, created_at) for delivery in deliveries]
    statement = _insert_ignoring_duplicates(session).returning(_deliveries.c.id)
    inserted = (await session.execute(statement, rows)).all()
    return len(inserted)


def _delivery_row(delivery: NewDelivery, created_at: datetime) -> dict[str, Any]:
    next_attempt_at = delivery.next_attempt_at or created_at
    return {
        "target": delivery.target,
        "scan_row_id": delivery.scan_row_id,
        "notifier": delivery.notifier,
        "kind": delivery.kind,
        "dedupe_key": delivery.dedupe_key,
        "payload": delivery.payload,
        "webhook_id": delivery.webhook_id,
        "status": DeliveryStatus.PENDING.value,
        "attempts": 0,
        "next_attempt_at": ensure_utc(next_attempt_at, "next_attempt_at"),
        "last_error": None,
        "created_at": created_at,
        "sent_at": None,
    }


def _insert_ignoring_duplicates(session: AsyncSession) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(_deliveries).on_conflict_do_nothing(
            index_elements=["notifier", "dedupe_key"]
        )
    if dialect == "sqlite":
        return sqlite.insert(_deliveries).on_conflict_do_nothing(
            index_elements=["notifier", "dedupe_key"]
        )
    raise StorageError(f"unsupported database dialect {dialect!r} for the outbox")


async def prune_deliveries(session: AsyncSession, *, older_than: datetime) -> int:
    """Delete sent and failed deliveries created before `older_than`; return how many.

    Pending and sending deliveries stay, whatever their age, so retention never drops an
    alert that has not been delivered or given up.
    """
    older_than = ensure_utc(older_than, "older_than")
    result = await session.execute(
        delete(_deliveries).where(
            _deliveries.c.status.in_((DeliveryStatus.SENT.value, DeliveryStatus.FAILED.value)),
            _deliveries.c.created_at < older_than,
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
