"""The dispatcher's statements on the `deliveries` table: claim, record, list and retry.

A claim is one atomic UPDATE that moves the oldest due row of a channel to `sending`, counts
the attempt and sets `next_attempt_at` to the end of the claim. On PostgreSQL the row is
chosen with SELECT ... FOR UPDATE SKIP LOCKED, so two dispatchers never claim the same row;
SQLite runs one write at a time, so the single statement is enough there. A sender that dies
after claiming leaves a `sending` row whose `next_attempt_at` passes, and the row is claimed
again: the message is then sent at most once more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.storage.deliveries import DeliveryStatus
from service.storage.tables import DeliveryRecord

_CLAIMABLE = (DeliveryStatus.PENDING.value, DeliveryStatus.SENDING.value)


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery this process owns until `claimed_until`; `attempts` includes this one."""

    id: int
    notifier: str
    payload: str
    webhook_id: str
    attempts: int
    last_error: str | None
    claimed_until: datetime
    created_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """One delivery as `deliveries list` shows it (the payload left out)."""

    id: int
    target: str
    notifier: str
    kind: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    webhook_id: str


async def claim_next(
    session: AsyncSession, notifiers: Sequence[str], *, now: datetime, claim_timeout_s: float
) -> ClaimedDelivery | None:
    """Claim the oldest due delivery of `notifiers`, or return None when none is due."""
    due = and_(
        DeliveryRecord.notifier.in_(notifiers),
        DeliveryRecord.status.in_(_CLAIMABLE),
        DeliveryRecord.next_attempt_at <= now,
    )
    candidate = (
        select(DeliveryRecord.id)
        .where(due)
        .order_by(DeliveryRecord.created_at, DeliveryRecord.id)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        candidate = candidate.with_for_update(skip_locked=True)
    claimed_until = now + timedelta(seconds=claim_timeout_s)
    statement = (
        update(DeliveryRecord)
        .where(DeliveryRecord.id == candidate.scalar_subquery(), due)
        .values(
            status=DeliveryStatus.SENDING.value,
            attempts=DeliveryRecord.attempts + 1,
            next_attempt_at=claimed_until,
        )
        .returning(
            DeliveryRecord.id,
            DeliveryRecord.notifier,
            DeliveryRecord.payload,
            DeliveryRecord.webhook_id,
            DeliveryRecord.attempts,
            DeliveryRecord.last_error,
            DeliveryRecord.created_at,
        )
        .execution_options(synchronize_session=False)
    )
    row = (await session.execute(statement)).one_or_none()
    if row is None:
        return None
    return ClaimedDelivery(
        id=row.id,
        notifier=row.notifier,
        payload=row.payload,
        webhook_id=row.webhook_id,
        attempts=row.attempts,
        last_error=row.last_error,
        claimed_until=claimed_until,
        created_at=row.created_at,
    )


async def next_due_at(session: AsyncSession, notifiers: Sequence[str]) -> datetime | None:
    """When the next pending or claimed delivery of `notifiers` becomes due."""
    statement = select(func.min(DeliveryRecord.next_attempt_at)).where(
        DeliveryRecord.notifier.in_(notifiers), DeliveryRecord.status.in_(_CLAIMABLE)
    )
    value = (await session.execute(statement)).scalar_one_or_none()
    return value if isinstance(value, datetime) else None


async def record_sent(session: AsyncSession, claim: ClaimedDelivery, *, now: datetime) -> bool:
    """Mark a claimed delivery sent; False when the claim had expired and another took it."""
    return await _update_claimed(
        session, claim, status=DeliveryStatus.SENT, sent_at=now, last_error=None
    )


async def record_retry(
    session: AsyncSession,
    claim: ClaimedDelivery,
    *,
    reason: str,
    next_attempt_at: datetime,
    channel_notifiers: Sequence[str],
) -> bool:
    """Schedule another attempt, and hold the channel's other pending deliveries until then
    without counting an attempt, so that only one delivery probes a receiver that is down."""
    updated = await _update_claimed(
        session,
        claim,
        status=DeliveryStatus.PENDING,
        next_attempt_at=next_attempt_at,
        last_error=reason,
    )
    await session.execute(
        update(DeliveryRecord)
        .where(
            DeliveryRecord.notifier.in_(channel_notifiers),
            DeliveryRecord.status == DeliveryStatus.PENDING.value,
            DeliveryRecord.next_attempt_at < next_attempt_at,
            DeliveryRecord.id != claim.id,
        )
        .values(next_attempt_at=next_attempt_at)
        .execution_options(synchronize_session=False)
    )
    return updated


async def record_failed(session: AsyncSession, claim: ClaimedDelivery, *, reason: str) -> bool:
    """Give a delivery up; it stays in the table for `deliveries list` and `retry`."""
    return await _update_claimed(session, claim, status=DeliveryStatus.FAILED, last_error=reason)


async def record_split(
    session: AsyncSession,
    claim: ClaimedDelivery,
    *,
    payloads: tuple[str, str],
    second_dedupe_key: str,
    second_webhook_id: str,
    now: datetime,
) -> bool:
    """Replace a delivery's payload with its first half and add the second half as a new
    pending delivery of the same notifier, target, scan and kind, due at once."""
    original = await session.get(DeliveryRecord, claim.id)
    if original is None:
        return False
    updated = await _update_claimed(
        session,
        claim,
        status=DeliveryStatus.PENDING,
        payload=payloads[0],
        next_attempt_at=now,
        last_error="split in two because the receiver rejected it as too long",
    )
    if not updated:
        return False
    await session.execute(
        insert(DeliveryRecord).values(
            target=original.target,
            scan_row_id=original.scan_row_id,
            notifier=original.notifier,
            kind=original.kind,
            dedupe_key=second_dedupe_key,
            payload=payloads[1],
            webhook_id=second_webhook_id,
            status=DeliveryStatus.PENDING.value,
            attempts=0,
            next_attempt_at=now,
            last_error=None,
            created_at=original.created_at,
            sent_at=None,
        )
    )
    return True


async def dedupe_key_of(session: AsyncSession, delivery_id: int) -> str | None:
    statement = select(DeliveryRecord.dedupe_key).where(DeliveryRecord.id == delivery_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def count_waiting_without_notifier(session: AsyncSession, notifiers: Sequence[str]) -> int:
    """Pending deliveries whose notifier is not configured, which nothing will send."""
    statement = select(func.count(DeliveryRecord.id)).where(
        DeliveryRecord.status.in_(_CLAIMABLE), DeliveryRecord.notifier.not_in(notifiers)
    )
    return int((await session.execute(statement)).scalar_one())


async def _update_claimed(
    session: AsyncSession, claim: ClaimedDelivery, *, status: DeliveryStatus, **values: object
) -> bool:
    # The claim is valid only while the row is still `sending` with this attempt count. After
    # the claim expired, another dispatcher may own it. The session's ORM objects are not
    # synchronized because the dispatcher keeps none.
    result = await session.execute(
        update(DeliveryRecord)
        .where(
            DeliveryRecord.id == claim.id,
            DeliveryRecord.status == DeliveryStatus.SENDING.value,
            DeliveryRecord.attempts == claim.attempts,
        )
        .values(status=status.value, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def list_delivery_views(
    session: AsyncSession,
    *,
    status: DeliveryStatus | None = None,
    notifier: str | None = None,
    target: str | None = None,
    limit: int = 50,
) -> list[DeliveryView]:
    """Deliveries, newest first, optionally filtered by status, notifier and target."""
    statement = select(DeliveryRecord).order_by(
        DeliveryRecord.created_at.desc(), DeliveryRecord.id.desc()
    )
    if status is not None:
        statement = statement.where(DeliveryRecord.status == status.value)
    if notifier is not None:
        statement = statement.where(DeliveryRecord.notifier == notifier)
    if target is not None:
        statement = statement.where(DeliveryRecord.target == target)
    records = (await session.execute(statement.limit(limit))).scalars().all()
    return [_view(record) for record in records]


async def requeue_failed(
    session: AsyncSession, delivery_ids: Sequence[int] | None, *, now: datetime
) -> list[int]:
    """Move failed deliveries (these ids, or all when None) back to pending with a fresh
    attempt budget; return the ids moved."""
    condition = DeliveryRecord.status == DeliveryStatus.FAILED.value
    if delivery_ids is not None:
        condition = and_(condition, DeliveryRecord.id.in_(delivery_ids))
    statement = (
        update(DeliveryRecord)
        .where(condition)
        .values(status=DeliveryStatus.PENDING.value, attempts=0, next_attempt_at=now)
        .returning(DeliveryRecord.id)
        .execution_options(synchronize_session=False)
    )
    return sorted(row.id for row in (await session.execute(statement)).all())


async def statuses_of(session: AsyncSession, delivery_ids: Sequence[int]) -> dict[int, str]:
    statement = select(DeliveryRecord.id, DeliveryRecord.status).where(
        DeliveryRecord.id.in_(delivery_ids)
    )
    return {row.id: row.status for row in (await session.execute(statement)).all()}


def _view(record: DeliveryRecord) -> DeliveryView:
    return DeliveryView(
        id=record.id,
        target=record.target,
        notifier=record.notifier,
        kind=record.kind,
        status=record.status,
        attempts=record.attempts,
        next_attempt_at=record.next_attempt_at,
        last_error=record.last_error,
        created_at=record.created_at,
        sent_at=record.sent_at,
        webhook_id=record.webhook_id,
    )
