"""generate_scenario: deterministic, long-tailed, drifting teams."""

from __future__ import annotations

import itertools
import statistics

import pytest

from service.simulator import ScenarioError, generate_scenario
from service.simulator.scenario import URN_PATTERN


def test_generate_scenario_same_seed_same_team() -> None:
    first = generate_scenario(11, rules=60, resources=3000, scans=4)
    second = generate_scenario(11, rules=60, resources=3000, scans=4)

    assert first == second


def test_generate_scenario_other_seed_other_team() -> None:
    first = generate_scenario(11, rules=60, resources=3000)
    second = generate_scenario(12, rules=60, resources=3000)

    assert first.rules != second.rules
    assert first.scans != second.scans


def test_generate_scenario_has_requested_sizes() -> None:
    scenario = generate_scenario(5, rules=300, resources=50_000, scans=3)

    assert len(scenario.rules) == 300
    assert len(scenario.resources) == 50_000
    assert len(scenario.scans) == 3
    assert scenario.affected_resource_total >= 30_000
    assert len({rule.uuid for rule in scenario.rules}) == 300
    assert len(scenario.resources_by_urn) == 50_000


def test_generate_scenario_spread_is_long_tailed() -> None:
    scenario = generate_scenario(5, rules=300, resources=50_000)
    sizes = sorted((len(urns) for urns in scenario.scans[0].findings.values()), reverse=True)

    assert sizes[0] >= 1000
    assert sum(1 for size in sizes if size >= 1000) <= 10
    assert statistics.median(sizes) <= 25
    assert sum(sizes[:10]) > sum(sizes[10:])


def test_generate_scenario_scans_drift() -> None:
    scenario = generate_scenario(8, rules=200, resources=20_000, scans=6)
    plans = scenario.scans
    rule_sets = [set(plan.findings) for plan in plans]

    appeared = set().union(*(later - earlier for earlier, later in itertools.pairwise(rule_sets)))
    resolved = set().union(*(earlier - later for earlier, later in itertools.pairwise(rule_sets)))
    reopened = {
        rule
        for index, rules in enumerate(rule_sets[2:], start=2)
        for rule in rules
        if rule in rule_sets[0] and any(rule not in rule_sets[i] for i in range(1, index))
    }
    assert appeared
    assert resolved
    assert reopened
    shared = rule_sets[0] & rule_sets[1]
    grown = [
        rule for rule in shared if not set(plans[1].findings[rule]) <= set(plans[0].findings[rule])
    ]
    assert grown
    assert plans[-1].severity_overrides


def test_generate_scenario_resources_are_valid() -> None:
    scenario = generate_scenario(2, rules=30, resources=2000)

    assert all(URN_PATTERN.match(resource.urn) for resource in scenario.resources)
    assert all(resource.type for resource in scenario.resources)
    names = [resource.name for resource in scenario.resources]
    assert any(not name.isascii() for name in names)
    for plan in scenario.scans:
        for urns in plan.findings.values():
            assert len(urns) == len(set(urns))
            assert all(urn in scenario.resources_by_urn for urn in urns)


def test_generate_scenario_rules_match_their_resource_type() -> None:
    scenario = generate_scenario(4, rules=18, resources=5000)
    backups = next(rule for rule in scenario.rules if rule.name == "Droplet Backups Not Enabled")

    urns = scenario.scans[0].findings.get(backups.uuid, ())
    assert all(urn.startswith("do:droplet:") for urn in urns)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"rules": 0, "resources": 10}, "rules must be at least 1"),
        ({"rules": 5, "resources": 0}, "resources must be at least 1"),
        ({"rules": 5, "resources": 10, "scans": 0}, "scans must be at least 1"),
        ({"rules": 5, "resources": 10, "skew": 0}, "skew must be positive"),
    ],
)
def test_generate_scenario_rejects_bad_arguments(options: dict[str, int], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        generate_scenario(1, **options)
