"""Collect every finding of a finished scan and the affected resources that the target wants."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from service.diffing import CollectedFinding, CollectedScan
from service.digitalocean.client import SecurityClient
from service.digitalocean.errors import DigitalOceanError
from service.digitalocean.models import AffectedResource, Finding, Scan, ScanStatus, Severity

log = structlog.get_logger(__name__)

# Findings whose resources are fetched at the same time. The client's rate limiter paces the
# requests; this only bounds how many pages are in flight.
RESOURCE_CONCURRENCY = 8
# Characters kept of each problem sentence.
MAX_PROBLEM_CHARS = 500


@dataclass(frozen=True, slots=True)
class Collection:
    """A collected scan and the problems that made it incomplete, one sentence each."""

    scan: CollectedScan
    problems: tuple[str, ...]


async def collect_scan(
    client: SecurityClient,
    target: str,
    scan: Scan,
    *,
    resource_detail_min_severity: Severity,
) -> Collection:
    """Read every page of the scan's findings, then the resources of findings at or above
    `resource_detail_min_severity`.

    A failed page never raises here: it marks the collection incomplete, so the scan is stored
    but changes no finding state and raises no alert.
    """
    problems: list[str] = []
    stream = client.iter_findings(scan.id)
    try:
        findings = await stream.collect()
    except DigitalOceanError as error:
        problems.append(f"reading the findings failed: {error}")
        return Collection(_collected(target, scan, (), complete=False), _brief(problems))
    problems.extend(findings.problems)
    # A page that describes the scan as anything but COMPLETED (running again, failed, an
    # unknown status) may list only some findings, so its absences resolve nothing.
    paged_status = stream.scan.status if stream.scan is not None else ScanStatus.COMPLETED
    if paged_status is not ScanStatus.COMPLETED:
        problems.append(
            f"the pages of findings described scan {scan.id} as {paged_status.value}, not COMPLETED"
        )

    semaphore = asyncio.Semaphore(RESOURCE_CONCURRENCY)
    collected = await asyncio.gather(
        *(
            _collect_finding(client, scan.id, finding, resource_detail_min_severity, semaphore)
            for finding in findings.items
        )
    )
    for _, finding_problems in collected:
        problems.extend(finding_problems)
    complete = findings.complete and not problems
    items = [item for item, _ in collected]
    return Collection(_collected(target, scan, items, complete=complete), _brief(problems))


async def _collect_finding(
    client: SecurityClient,
    scan_id: str,
    finding: Finding,
    min_severity: Severity,
    semaphore: asyncio.Semaphore,
) -> tuple[CollectedFinding, tuple[str, ...]]:
    if finding.severity < min_severity:
        return CollectedFinding(finding, resources=None), ()
    async with semaphore:
        try:
            resources = await client.collect_affected_resources(
                scan_id, finding.finding_uuid, expected=finding.affected_resources_count
            )
        except DigitalOceanError as error:
            problem = f"reading the affected resources of rule {finding.rule_uuid} failed: {error}"
            return CollectedFinding(finding, resources=None), (problem,)
    items: Sequence[AffectedResource] = resources.items
    return CollectedFinding(finding, resources=items), resources.problems


def _brief(problems: Sequence[str]) -> tuple[str, ...]:
    # A problem can quote what the API sent; the scan row and the logs keep a bounded part.
    return tuple(
        problem if len(problem) <= MAX_PROBLEM_CHARS else problem[: MAX_PROBLEM_CHARS - 3] + "..."
        for problem in problems
    )


def _collected(
    target: str, scan: Scan, findings: Sequence[CollectedFinding], *, complete: bool
) -> CollectedScan:
    return CollectedScan(
        target=target,
        scan_id=scan.id,
        status=scan.status,
        complete=complete,
        findings=findings,
    )
