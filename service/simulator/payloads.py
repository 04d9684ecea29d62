"""JSON bodies of the simulated API, shaped as DigitalOcean's OpenAPI file declares them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from service.simulator.clock import format_timestamp
from service.simulator.scenario import Resource, to_plain_data
from service.simulator.state import (
    SCAN_NOT_RUN,
    SimulatedFinding,
    SimulatedScan,
    SimulatorState,
    SuppressionRecord,
)


def scan_payload(scan: SimulatedScan, findings: Sequence[SimulatedFinding]) -> dict[str, Any]:
    return {
        "id": scan.id,
        "status": scan.status,
        "created_at": format_timestamp(scan.created_at_s),
        "findings": [finding_payload(finding) for finding in findings],
    }


def scan_not_run_payload() -> dict[str, Any]:
    """The scan that `latest` returns before any scan exists: a status and no findings."""
    return {"status": SCAN_NOT_RUN, "findings": []}


def finding_payload(finding: SimulatedFinding) -> dict[str, Any]:
    rule = finding.rule
    return {
        "rule_uuid": rule.uuid,
        "name": rule.name,
        "details": rule.details,
        "found_at": format_timestamp(finding.found_at_s),
        "severity": finding.severity.value,
        "business_impact": rule.business_impact,
        "technical_details": rule.technical_details,
        "mitigation_steps": [
            {"step": step.step, "title": step.title, "description": step.description}
            for step in rule.mitigation_steps
        ],
        "affected_resources_count": len(finding.resources),
    }


def resource_payload(resource: Resource) -> dict[str, str]:
    return {"urn": resource.urn, "name": resource.name, "type": resource.type}


def suppression_payload(record: SuppressionRecord) -> dict[str, str]:
    return {
        "id": record.id,
        "rule_uuid": record.rule_uuid,
        "rule_name": record.rule_name,
        "resource_id": record.resource_id,
        "resource_type": record.resource_type,
    }


def suppressions_page(
    records: Iterable[SuppressionRecord],
    *,
    page: int,
    pages: int,
    total: int,
    links: dict[str, Any] | None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resources": [suppression_payload(record) for record in records],
        "meta": {"page": page, "pages": pages, "total": total},
    }
    if links is not None:
        body["links"] = links
    return body


def tier_coverage_payload(state: SimulatorState) -> dict[str, Any]:
    return {tier: to_plain_data(value) for tier, value in state.tier_coverage.items()}


def plan_downgrades_payload(state: SimulatorState) -> dict[str, Any]:
    return {tier: to_plain_data(value) for tier, value in state.plan_downgrades.items()}
