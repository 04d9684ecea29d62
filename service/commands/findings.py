"""`cspm-watch findings` and `cspm-watch resources`: a scan's findings and their resources.

Both read from the DigitalOcean API by default (`--from api`) or from the scans that cycles
stored (`--from db`), which works offline and for scans the team no longer lists.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service.commands.common import (
    CommandError,
    open_client,
    open_database,
    pick_target,
    warn_incomplete,
)
from service.commands.output import (
    OutputFormat,
    format_time,
    json_time,
    print_json,
    print_table,
)
from service.commands.scans import EXIT_OK, status_of
from service.config import Settings
from service.digitalocean.models import AffectedResource, Finding, ScanStatus, Severity
from service.storage import (
    FindingRecord,
    ScanRecord,
    finding_from_record,
    findings_of_scan,
    get_scan,
    list_scans,
    resources_of_finding,
)


class Source(enum.Enum):
    """Source of the scan details that a command prints: the API or the database."""

    API = "api"
    DB = "db"


@dataclass(frozen=True, slots=True)
class ScanFindings:
    """The findings of one scan as a command read them."""

    target: str
    scan_id: str
    status: str
    source: Source
    findings: Sequence[Finding]
    complete: bool = True
    problems: Sequence[str] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class FindingResources:
    """The affected resources of one finding as a command read them."""

    scan_id: str
    rule_uuid: str
    source: Source
    resources: Sequence[AffectedResource]
    complete: bool = True
    problems: Sequence[str] = field(default_factory=tuple)


# findings


async def show_findings(
    settings: Settings,
    target_name: str | None,
    scan_id: str | None,
    *,
    severity: Severity | None,
    source: Source,
    output: OutputFormat,
) -> int:
    """Print the findings of a scan, or of the latest scan when `scan_id` is None.

    `severity` keeps only the findings of exactly that severity, as the API's filter does.
    From the database, "latest" is the target's newest stored COMPLETED scan.
    """
    if source is Source.API:
        result = await _findings_from_api(settings, target_name, scan_id, severity)
    else:
        result = await _findings_from_database(settings, target_name, scan_id, severity)
    _print_findings(result, output)
    return EXIT_OK


async def _findings_from_api(
    settings: Settings, target_name: str | None, scan_id: str | None, severity: Severity | None
) -> ScanFindings:
    target = pick_target(settings, target_name)
    async with open_client(settings, target) as client:
        if scan_id is None:
            latest = await client.collect_latest_findings(severity=severity)
            scan, collected = latest.scan, latest.findings
        else:
            stream = client.iter_findings(scan_id, severity=severity)
            collected = await stream.collect()
            if stream.scan is None:
                raise RuntimeError("the scan's first page set no scan")  # pragma: no cover
            scan = stream.scan
    return ScanFindings(
        target=target.name,
        scan_id=scan.id,
        status=status_of(scan),
        source=Source.API,
        findings=collected.items,
        complete=collected.complete,
        problems=collected.problems,
    )


async def _findings_from_database(
    settings: Settings, target_name: str | None, scan_id: str | None, severity: Severity | None
) -> ScanFindings:
    async with open_database(settings) as sessions, sessions() as session:
        if scan_id is None:
            target = pick_target(settings, target_name)
            record = await _latest_stored_scan(session, target.name)
        else:
            record = await _stored_scan(session, settings, scan_id, target_name)
        records = await findings_of_scan(session, record.id)
    findings = [finding_from_record(item) for item in records]
    if severity is not None:
        findings = [finding for finding in findings if finding.severity is severity]
    return ScanFindings(
        target=record.target,
        scan_id=record.scan_id,
        status=record.status,
        source=Source.DB,
        findings=findings,
        complete=record.collection_complete,
        problems=tuple(record.collection_problems),
    )


def _print_findings(result: ScanFindings, output: OutputFormat) -> None:
    if not result.complete:
        warn_incomplete(f"the findings of scan {result.scan_id}", result.problems)
    findings = sorted(result.findings, key=lambda finding: (-finding.severity.rank, finding.name))
    if output is OutputFormat.JSON:
        print_json(
            {
                "target": result.target,
                "scan_id": result.scan_id,
                "status": result.status,
                "source": result.source.value,
                "complete": result.complete,
                "findings": [_finding_json(finding) for finding in findings],
            }
        )
        return
    print_table(
        ["Rule ID", "Name", "Affected Resources", "Found At", "Severity"],
        [
            (
                finding.rule_uuid,
                finding.name,
                finding.affected_resources_count,
                finding.found_at,
                finding.severity.value,
            )
            for finding in findings
        ],
        title=f"Findings of scan {result.scan_id} ({result.status})",
        empty="No findings.",
    )


def _finding_json(finding: Finding) -> dict[str, Any]:
    return {
        "rule_uuid": finding.rule_uuid,
        "name": finding.name,
        "severity": finding.severity.value,
        "affected_resources_count": finding.affected_resources_count,
        "found_at": json_time(finding.found_at),
        "details": finding.details,
        "business_impact": finding.business_impact,
        "technical_details": finding.technical_details,
        "mitigation_steps": [
            {"step": step.step, "title": step.title, "description": step.description}
            for step in finding.mitigation_steps
        ],
    }


# resources


async def show_resources(
    settings: Settings,
    target_name: str | None,
    scan_id: str,
    rule_uuid: str,
    *,
    source: Source,
    output: OutputFormat,
) -> int:
    """Print the affected resources of the finding of rule `rule_uuid` in a scan."""
    if source is Source.API:
        result = await _resources_from_api(settings, target_name, scan_id, rule_uuid)
    else:
        result = await _resources_from_database(settings, target_name, scan_id, rule_uuid)
    _print_resources(result, output)
    return EXIT_OK


async def _resources_from_api(
    settings: Settings, target_name: str | None, scan_id: str, rule_uuid: str
) -> FindingResources:
    target = pick_target(settings, target_name)
    async with open_client(settings, target) as client:
        # The affected-resources path takes the finding's rule UUID: findings have no id.
        collected = await client.collect_affected_resources(scan_id, rule_uuid)
    return FindingResources(
        scan_id=scan_id,
        rule_uuid=rule_uuid,
        source=Source.API,
        resources=collected.items,
        complete=collected.complete,
        problems=collected.problems,
    )


async def _resources_from_database(
    settings: Settings, target_name: str | None, scan_id: str, rule_uuid: str
) -> FindingResources:
    async with open_database(settings) as sessions, sessions() as session:
        record = await _stored_scan(session, settings, scan_id, target_name)
        finding = await _stored_finding(session, record, rule_uuid)
        resources = await resources_of_finding(session, finding.id)
    return FindingResources(
        scan_id=record.scan_id,
        rule_uuid=finding.rule_uuid,
        source=Source.DB,
        resources=[AffectedResource(item.urn, item.name, item.type) for item in resources],
        complete=record.collection_complete,
        problems=tuple(record.collection_problems),
    )


def _print_resources(result: FindingResources, output: OutputFormat) -> None:
    if not result.complete:
        warn_incomplete(f"the affected resources of rule {result.rule_uuid}", result.problems)
    if output is OutputFormat.JSON:
        print_json(
            {
                "scan_id": result.scan_id,
                "rule_uuid": result.rule_uuid,
                "source": result.source.value,
                "complete": result.complete,
                "resources": [
                    {"urn": item.urn, "name": item.name, "type": item.type}
                    for item in result.resources
                ],
            }
        )
        return
    print_table(
        ["URN", "Name", "Type"],
        [(item.urn, item.name, item.type) for item in result.resources],
        title=f"Affected resources of rule {result.rule_uuid} in scan {result.scan_id}",
        empty="No affected resources.",
    )


# Stored scans


async def _stored_scan(
    session: AsyncSession, settings: Settings, scan_id: str, target_name: str | None
) -> ScanRecord:
    """Return the stored scan with DigitalOcean's `scan_id`.

    Raise CommandError when it is not stored or its details were pruned.
    """
    target = settings.target(target_name).name if target_name is not None else None
    record = await get_scan(session, scan_id, target=target)
    if record is None:
        raise CommandError(
            f"scan {scan_id} is not stored in the database: list the stored scans with "
            "`cspm-watch scans list --stored`, or read the scan with --from api"
        )
    _require_details(record)
    return record


async def _latest_stored_scan(session: AsyncSession, target: str) -> ScanRecord:
    records = await list_scans(session, target=target, status=ScanStatus.COMPLETED, limit=1)
    if not records:
        raise CommandError(
            f"no completed scan of target {target} is stored: run `cspm-watch once`, or read "
            "the latest scan with --from api"
        )
    _require_details(records[0])
    return records[0]


def _require_details(record: ScanRecord) -> None:
    if record.details_pruned_at is None:
        return
    raise CommandError(
        f"the findings of scan {record.scan_id} were deleted on "
        f"{format_time(record.details_pruned_at)} after retention.scan_details_days: read "
        "the scan with --from api if DigitalOcean still has it"
    )


async def _stored_finding(
    session: AsyncSession, record: ScanRecord, rule_uuid: str
) -> FindingRecord:
    # Rule UUIDs compare case-insensitively, as fingerprints do.
    normalized_uuid = rule_uuid.strip().lower()
    findings = await findings_of_scan(session, record.id)
    finding = next((item for item in findings if item.rule_uuid.lower() == normalized_uuid), None)
    if finding is None:
        raise CommandError(
            f"scan {record.scan_id} has no stored finding of rule {rule_uuid}: list its rules "
            f"with `cspm-watch findings {record.scan_id} --from db`"
        )
    if not finding.resources_fetched:
        raise CommandError(
            f"the affected resources of rule {rule_uuid} in scan {record.scan_id} were not "
            "stored, because the cycle fetches them only for findings at or above the "
            "target's resource_detail_min_severity: read them with --from api"
        )
    return finding
