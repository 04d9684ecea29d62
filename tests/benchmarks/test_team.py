"""Team sizes and the fewest requests a cycle can make, as the benchmark computes them."""

from __future__ import annotations

import pytest
from team import (
    MEASURED_SCAN_NUMBER,
    SIZES,
    alternating_team,
    build_team,
    minimum_requests,
    scan_size,
)

from service.digitalocean.models import Severity
from service.simulator import Resource, Rule, ScanPlan, Scenario

RULE_HIGH = "11111111-1111-4111-8111-111111111111"
RULE_LOW = "22222222-2222-4222-8222-222222222222"


def _team(first: dict[str, int], second: dict[str, int], *, polls: int = 1) -> Scenario:
    """A team whose two scans give each rule the first N droplets."""
    resources = tuple(
        Resource(urn=f"do:droplet:{number}", name=f"web-{number}", type="Droplet")
        for number in range(1000)
    )
    rules = (
        Rule(uuid=RULE_HIGH, name="SSH open", severity=Severity.HIGH),
        Rule(uuid=RULE_LOW, name="No backups", severity=Severity.LOW),
    )

    def plan(counts: dict[str, int]) -> ScanPlan:
        findings = {rule: tuple(r.urn for r in resources[:n]) for rule, n in counts.items()}
        return ScanPlan(findings=findings, in_progress_polls=polls)

    return Scenario(
        name="test", resources=resources, rules=rules, scans=(plan(first), plan(second))
    )


@pytest.mark.parametrize("name", ["small", "medium"])
def test_build_team_measured_scan_has_exact_size(name: str) -> None:
    size = SIZES[name]

    team = build_team(size)

    assert scan_size(team, MEASURED_SCAN_NUMBER) == (size.findings, size.affected_resources)


def test_build_team_same_seed_same_team() -> None:
    first = build_team(SIZES["small"])
    second = build_team(SIZES["small"])

    assert first.scans == second.scans


def test_minimum_requests_counts_each_kind() -> None:
    team = _team({RULE_HIGH: 10}, {RULE_HIGH: 450, RULE_LOW: 1}, polls=2)

    counts = minimum_requests(
        team, 2, resource_detail_min_severity=Severity.LOW, alert_min_severity=Severity.HIGH
    )

    assert counts.triggers == 1
    assert counts.polls == 3
    assert counts.finding_pages == 1
    assert counts.resource_pages == 3 + 1
    assert counts.settings_pages == 1
    assert counts.total == 10


def test_minimum_requests_no_alert_no_settings_page() -> None:
    team = _team({RULE_HIGH: 10}, {RULE_HIGH: 10, RULE_LOW: 5})

    counts = minimum_requests(
        team, 2, resource_detail_min_severity=Severity.LOW, alert_min_severity=Severity.HIGH
    )

    assert counts.settings_pages == 0


def test_minimum_requests_first_scan_alerts_on_high() -> None:
    team = _team({RULE_HIGH: 1}, {RULE_HIGH: 1})

    counts = minimum_requests(
        team, 1, resource_detail_min_severity=Severity.LOW, alert_min_severity=Severity.HIGH
    )

    assert counts.settings_pages == 1


def test_minimum_requests_skips_resources_below_detail() -> None:
    team = _team({RULE_HIGH: 10}, {RULE_HIGH: 10, RULE_LOW: 900})

    counts = minimum_requests(
        team, 2, resource_detail_min_severity=Severity.HIGH, alert_min_severity=Severity.HIGH
    )

    assert counts.resource_pages == 1


def test_alternating_team_repeats_first_two_scans() -> None:
    team = build_team(SIZES["small"])

    alternating = alternating_team(team, 5)

    assert alternating.scans == (team.scans[0], team.scans[1]) * 2 + (team.scans[0],)
