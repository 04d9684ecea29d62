"""Per-target cycle health: the current streak of failed cycles and the last success.

The cycle records every outcome here. A target that keeps failing then alerts once, when the
streak reaches its threshold. Readiness finds a target that has not succeeded for too long, and
the next cycle recognises one that died half-way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, String, Text, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from service.storage.tables import Base
from service.storage.types import ensure_utc


class TargetStatusRecord(Base):
    """One row per target.

    `cycle_started_at` is set while a cycle runs and cleared when it ends; a value left over
    at the start of the next cycle means the previous one died, and a scan it created may not
    have been recorded.
    """

    __tablename__ = "target_status"

    target: Mapped[str] = mapped_column(String, primary_key=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_success_at: Mapped[datetime | None]
    last_failure_at: Mapped[datetime | None]
    last_failure_reason: Mapped[str | None] = mapped_column(Text)
    cycle_started_at: Mapped[datetime | None]


_target_status = Base.metadata.tables["target_status"]


@dataclass(frozen=True, slots=True)
class CycleStart:
    """The result of `mark_cycle_started`: when an unfinished earlier cycle started, if any."""

    unfinished_since: datetime | None


async def mark_cycle_started(session: AsyncSession, target: str, *, now: datetime) -> CycleStart:
    """Record that a cycle of `target` starts, and return any earlier unfinished cycle's start."""
    now = ensure_utc(now, "now")
    previous = await session.get(TargetStatusRecord, target)
    unfinished_since = previous.cycle_started_at if previous is not None else None
    await _upsert(session, target, {"cycle_started_at": now})
    return CycleStart(unfinished_since=unfinished_since)


async def record_cycle_success(session: AsyncSession, target: str, *, now: datetime) -> None:
    """End the target's failure streak and clear the running-cycle mark."""
    await _upsert(
        session,
        target,
        {
            "consecutive_failures": 0,
            "last_success_at": ensure_utc(now, "now"),
            "cycle_started_at": None,
        },
    )


async def record_cycle_failure(
    session: AsyncSession, target: str, *, now: datetime, reason: str
) -> int:
    """Lengthen the target's failure streak, clear the running-cycle mark, return the streak."""
    now = ensure_utc(now, "now")
    await _upsert(session, target, {})
    await session.execute(
        update(_target_status)
        .where(_target_status.c.target == target)
        .values(
            consecutive_failures=_target_status.c.consecutive_failures + 1,
            last_failure_at=now,
            last_failure_reason=reason,
            cycle_started_at=None,
        )
    )
    streak = await session.scalar(
        select(_target_status.c.consecutive_failures).where(_target_status.c.target == target)
    )
    return int(streak or 0)


async def target_statuses(session: AsyncSession) -> list[TargetStatusRecord]:
    return list((await session.scalars(select(TargetStatusRecord))).all())


async def _upsert(session: AsyncSession, target: str, values: dict[str, object]) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(_target_status).values(
        {"target": target, "consecutive_failures": 0, **values}
    )
    if values:
        statement = statement.on_conflict_do_update(index_elements=["target"], set_=values)
    else:
        statement = statement.on_conflict_do_nothing(index_elements=["target"])
    await session.execute(statement)
