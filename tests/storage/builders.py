"""Builders of findings and collected scans for the storage tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from service.diffing import CollectedFinding, CollectedScan, Diff, compute_diff
from service.digitalocean.models import (
    AffectedResource,
    Finding,
    MitigationStep,
    ScanStatus,
    Severity,
)
from service.storage import (
    apply_diff,
    load_finding_states,
    record_scan_started,
    store_scan_result,
)
from tests.storage.conftest import TestDatabase

TARGET = "production"


def finding(rule_uuid: str, severity: str = "HIGH", *, count: int | None = None) -> Finding:
    return Finding(
        rule_uuid=rule_uuid,
        name=f"Rule {rule_uuid}: droplet has no firewall",
        severity=Severity.parse(severity),
        details="Ünïcode, 'quotes' and\nnew lines survive",
        found_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
        business_impact="An attacker can reach every port.",
        technical_details="No firewall is attached to the droplet.",
        mitigation_steps=(
            MitigationStep(step=1, title="Create a firewall", description="Allow 22 and 443."),
            MitigationStep(step=2, title="Attach it", description="Tag the droplet."),
        ),
        affected_resources_count=count,
    )


def droplet(number: int) -> AffectedResource:
    return AffectedResource(urn=f"do:droplet:{number}", name=f"web-{number}", type="Droplet")


def collected(
    rule_uuid: str, severity: str = "HIGH", resources: Sequence[int] | None = None
) -> CollectedFinding:
    count = None if resources is None else len(resources)
    fetched = None if resources is None else [droplet(number) for number in resources]
    return CollectedFinding(finding(rule_uuid, severity, count=count), fetched)


def collected_scan(
    scan_id: str,
    *findings: CollectedFinding,
    status: ScanStatus = ScanStatus.COMPLETED,
    complete: bool = True,
    target: str = TARGET,
) -> CollectedScan:
    return CollectedScan(
        target=target, scan_id=scan_id, status=status, complete=complete, findings=findings
    )


async def run_cycle(database: TestDatabase, scan: CollectedScan, seen_at: datetime) -> Diff:
    """Record, store and diff a scan as the cycle does, in one transaction."""
    async with database.sessions.begin() as session:
        record = await record_scan_started(
            session, target=scan.target, scan_id=scan.scan_id, requested_at=seen_at
        )
        await store_scan_result(session, record.id, scan, collected_at=seen_at)
        states = await load_finding_states(session, scan.target)
        diff = compute_diff(states, scan)
        await apply_diff(session, diff, scan_row_id=record.id, seen_at=seen_at)
    return diff
