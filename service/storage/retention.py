"""Retention: prune old scan details and keep the finding states.

Finding states carry the first and last sighting of every fingerprint, so a pruned history
never makes an old finding read as new.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.digitalocean.models import ScanStatus
from service.storage.scans import delete_scan_details, utc_now
from service.storage.tables import ScanRecord
from service.storage.types import ensure_utc

_RUNNING_STATUSES = (ScanStatus.IN_PROGRESS.value, ScanStatus.UNKNOWN.value)


@dataclass(frozen=True, slots=True)
class PruneResult:
    """Counts of what `prune_scan_details` deleted."""

    scans: int
    findings: int
    resources: int


async def prune_scan_details(
    session: AsyncSession, *, older_than: datetime, max_scans: int | None = None
) -> PruneResult:
    """Delete the findings and affected resources of scans requested before `older_than`.

    Scan rows and finding states stay, and scans still running are skipped. `max_scans`
    limits one call to that many scans, oldest first. On SQLite a long backlog can then be
    pruned in several short transactions, because one long transaction blocks every writer.
    """
    older_than = ensure_utc(older_than, "older_than")
    scan_row_ids = await _prunable_scans(session, older_than, max_scans)
    if not scan_row_ids:
        return PruneResult(scans=0, findings=0, resources=0)

    findings, resources = await delete_scan_details(session, scan_row_ids)
    await session.execute(
        update(ScanRecord)
        .where(ScanRecord.id.in_(scan_row_ids))
        .values(details_pruned_at=utc_now()),
        execution_options={"synchronize_session": False},
    )
    return PruneResult(scans=len(scan_row_ids), findings=findings, resources=resources)


async def _prunable_scans(
    session: AsyncSession, older_than: datetime, max_scans: int | None
) -> list[int]:
    statement = (
        select(ScanRecord.id)
        .where(
            ScanRecord.requested_at < older_than,
            ScanRecord.details_pruned_at.is_(None),
            ScanRecord.status.not_in(_RUNNING_STATUSES),
        )
        .order_by(ScanRecord.id)
        .limit(max_scans)
    )
    return list((await session.scalars(statement)).all())
