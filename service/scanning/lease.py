"""Leases: the right of one process to run one target's cycle for a while.

A lease is one row per target. Claiming it is a single atomic upsert that succeeds only when
the row is missing, expired, or already held by the same holder. Two processes sharing a
database (replicas, the daemon and a CronJob) therefore never run one target at once. A
holder renews the lease while its cycle runs. If the process dies, the lease expires on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.storage.tables import Base, LeaseRecord

log = structlog.get_logger(__name__)

DEFAULT_LEASE_TTL_S = 120.0

_leases = Base.metadata.tables["leases"]


def new_holder_id() -> str:
    """Return an id for this process: host, process id and a random part, unique across
    restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def claim_lease(
    session: AsyncSession, target: str, holder: str, *, now: datetime, ttl_s: float
) -> bool:
    """Claim or renew the target's lease for `holder`; return False if another holder has it."""
    expires_at = now + timedelta(seconds=ttl_s)
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    table = _leases
    statement = (
        insert(table)
        .values(target=target, holder=holder, acquired_at=now, expires_at=expires_at)
        .on_conflict_do_update(
            index_elements=[table.c.target],
            set_={"holder": holder, "acquired_at": now, "expires_at": expires_at},
            where=(table.c.expires_at <= now) | (table.c.holder == holder),
        )
        .returning(table.c.holder)
    )
    claimed: str | None = (await session.execute(statement)).scalar_one_or_none()
    return claimed == holder


async def renew_lease(
    session: AsyncSession, target: str, holder: str, *, now: datetime, ttl_s: float
) -> bool:
    """Extend a lease this holder has; return False if it was lost to another holder."""
    result = await session.execute(
        update(LeaseRecord)
        .where(LeaseRecord.target == target, LeaseRecord.holder == holder)
        .values(expires_at=now + timedelta(seconds=ttl_s)),
        execution_options={"synchronize_session": False},
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release_lease(session: AsyncSession, target: str, holder: str) -> None:
    await session.execute(
        delete(LeaseRecord).where(LeaseRecord.target == target, LeaseRecord.holder == holder),
        execution_options={"synchronize_session": False},
    )


class LeaseLostError(Exception):
    """Another holder took the lease, or renewing it failed until it expired."""


@dataclass(slots=True)
class Lease:
    """A claimed (`held`) or refused lease; `lost` turns True if renewing it failed."""

    target: str
    holder: str
    held: bool
    lost: bool = False


@contextlib.asynccontextmanager
async def hold_lease(
    sessions: async_sessionmaker[AsyncSession],
    target: str,
    holder: str,
    *,
    now: Callable[[], datetime],
    ttl_s: float = DEFAULT_LEASE_TTL_S,
) -> AsyncIterator[Lease]:
    """Claim the target's lease, renew it in the background, and release it at the end.

    Yields a Lease whose `held` is False when another process has the target; the body must
    then do nothing. If renewal fails, the task running the body is cancelled, so a cycle never
    goes on without its lease.
    """
    async with sessions.begin() as session:
        held = await claim_lease(session, target, holder, now=now(), ttl_s=ttl_s)
    if not held:
        yield Lease(target, holder, held=False)
        return

    body_task = asyncio.current_task()
    assert body_task is not None
    lease = Lease(target, holder, held=True)
    renewer = asyncio.create_task(_renew_until_lost(sessions, lease, now, ttl_s, body_task))
    try:
        yield lease
    except asyncio.CancelledError:
        if not lease.lost:
            raise
        body_task.uncancel()
        raise LeaseLostError(
            f"the lease of target {target!r} was lost while its cycle ran; another process "
            "may now run it"
        ) from None
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        await _release_quietly(sessions, target, holder)


async def _renew_until_lost(
    sessions: async_sessionmaker[AsyncSession],
    lease: Lease,
    now: Callable[[], datetime],
    ttl_s: float,
    body_task: asyncio.Task[object],
) -> None:
    target, holder = lease.target, lease.holder
    interval_s = ttl_s / 3
    lease_expires_at = now() + timedelta(seconds=ttl_s)
    while True:
        await asyncio.sleep(interval_s)
        try:
            async with sessions.begin() as session:
                renewed = await renew_lease(session, target, holder, now=now(), ttl_s=ttl_s)
        except Exception as error:  # any database error: retry until the lease expires
            log.warning("lease_renewal_failed", target=target, error=str(error))
            if now() < lease_expires_at - timedelta(seconds=interval_s):
                continue
            renewed = False
        if not renewed:
            log.error("lease_lost", target=target, holder=holder)
            lease.lost = True
            body_task.cancel(msg=f"lease of target {target!r} lost")
            return
        lease_expires_at = now() + timedelta(seconds=ttl_s)


async def _release_quietly(
    sessions: async_sessionmaker[AsyncSession], target: str, holder: str
) -> None:
    # Shielded so that a cancelled cycle still gives its lease back; if the database is gone,
    # the lease simply expires.
    async def release() -> None:
        async with sessions.begin() as session:
            await release_lease(session, target, holder)

    try:
        await asyncio.shield(release())
    except Exception as error:  # the lease expires on its own
        log.warning("lease_release_failed", target=target, error=str(error))
