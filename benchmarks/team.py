"""Simulated teams of a given size, and the fewest API requests one cycle over them can make.

`build_team` wraps the simulator's generator, whose rule sizes follow a power law: a few rules
hit thousands of resources and most hit a handful. It trims the generator's output so that the
measured scan has exactly the requested number of findings and affected resources.
`minimum_requests` counts what a cycle cannot do without at a given resource-detail level.
"""

from __future__ import annotations

import dataclasses
import math
import random
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from service.digitalocean.models import Severity
from service.simulator import ScanPlan, Scenario, generate_scenario

# DigitalOcean's largest page (`per_page` at most 200), which the service and pydo both ask for.
PER_PAGE = 200
SEED = 20260807
# The cycle under measurement reads this scan; the scan before it is the stored baseline.
MEASURED_SCAN_NUMBER = 2
# Each simulated scan reads as IN_PROGRESS to this many polls before it completes.
IN_PROGRESS_POLLS = 1
# Generations tried, each with more rules or resources, until the measured scan is at least as
# large as requested. Trimming then makes it exact.
MAX_GENERATIONS = 12


@dataclass(frozen=True, slots=True)
class TeamSize:
    """The measured scan's size: findings, and affected resources over all findings."""

    name: str
    findings: int
    affected_resources: int


SIZES: Mapping[str, TeamSize] = {
    "small": TeamSize("small", findings=20, affected_resources=200),
    "medium": TeamSize("medium", findings=100, affected_resources=5_000),
    "large": TeamSize("large", findings=300, affected_resources=50_000),
}


@dataclass(frozen=True, slots=True)
class RequestCounts:
    """Requests of one cycle by kind. `other` is anything the cycle has no need for."""

    triggers: int = 0
    polls: int = 0
    finding_pages: int = 0
    resource_pages: int = 0
    settings_pages: int = 0
    other: int = 0

    @property
    def total(self) -> int:
        return (
            self.triggers
            + self.polls
            + self.finding_pages
            + self.resource_pages
            + self.settings_pages
            + self.other
        )

    def without_settings(self) -> RequestCounts:
        """Return these counts without the settings pages, which only the service reads."""
        return dataclasses.replace(self, settings_pages=0)

    def as_dict(self) -> dict[str, int]:
        return {**dataclasses.asdict(self), "total": self.total}


def build_team(size: TeamSize, seed: int = SEED) -> Scenario:
    """Generate a team whose measured scan has exactly `size.findings` findings and
    `size.affected_resources` affected resources.

    The generator's output varies with its arguments, so it is asked for more rules and
    resources than needed. Then rules other than the five largest are dropped at random, and
    every finding loses the same share of its resources.
    """
    rules = math.ceil(size.findings / 0.85)
    team_resources = math.ceil(size.affected_resources * 1.25)
    for _ in range(MAX_GENERATIONS):
        scenario = generate_scenario(
            seed,
            rules=rules,
            resources=team_resources,
            scans=MEASURED_SCAN_NUMBER,
            in_progress_polls=IN_PROGRESS_POLLS,
            name=f"benchmark-{size.name}",
        )
        findings = scenario.scan_plan(MEASURED_SCAN_NUMBER).findings
        if len(findings) < size.findings:
            rules += size.findings - len(findings) + 1
            continue
        trimmed = _drop_rules(scenario, len(findings) - size.findings, seed)
        pairs = _pairs(trimmed.scan_plan(MEASURED_SCAN_NUMBER))
        if pairs < size.affected_resources:
            team_resources = math.ceil(team_resources * 1.2 * size.affected_resources / pairs)
            continue
        return _trim_resources(trimmed, size.affected_resources)
    raise RuntimeError(f"no generated team fits {size}; raise MAX_GENERATIONS")


def alternating_team(team: Scenario, scans: int) -> Scenario:
    """Return `team` with `scans` scan plans that alternate between its first two.

    Every cycle then does the same work as the one two cycles before, with new, resolved and
    reopened findings against the previous scan. Memory that keeps growing over the cycles is
    then not explained by a team that grows.
    """
    plans = tuple(team.scans[number % 2] for number in range(scans))
    return dataclasses.replace(team, scans=plans)


def _pairs(plan: ScanPlan) -> int:
    return sum(len(urns) for urns in plan.findings.values())


def _drop_rules(scenario: Scenario, count: int, seed: int) -> Scenario:
    """Remove `count` rules of the measured scan from every scan of the scenario."""
    if count == 0:
        return scenario
    findings = scenario.scan_plan(MEASURED_SCAN_NUMBER).findings
    by_size = sorted(findings, key=lambda rule: len(findings[rule]), reverse=True)
    # The largest rules shape the long tail, so they stay.
    dropped = set(random.Random(seed).sample(by_size[5:], count))
    scans = tuple(
        dataclasses.replace(
            plan,
            findings={rule: urns for rule, urns in plan.findings.items() if rule not in dropped},
        )
        for plan in scenario.scans
    )
    return dataclasses.replace(scenario, scans=scans)


def _trim_resources(scenario: Scenario, target_pairs: int) -> Scenario:
    """Keep the same share of resources in every scan, so that the drift between scans keeps
    its proportions, and make the measured scan hold exactly `target_pairs`.

    A resource stays when a hash of its URN falls below the share, which keeps or drops it in
    every scan alike. The measured scan's largest finding then gains or loses the few
    resources that the hash leaves over or short.
    """
    plan = scenario.scan_plan(MEASURED_SCAN_NUMBER)
    share = target_pairs / _pairs(plan)
    scans = [_sample_plan(each, share) for each in scenario.scans]
    measured = scans[MEASURED_SCAN_NUMBER - 1]
    largest = max(plan.findings, key=lambda rule: len(plan.findings[rule]))
    excess = _pairs(measured) - target_pairs
    largest_urns = list(measured.findings[largest])
    if excess > 0:
        largest_urns = sorted(largest_urns, key=_urn_rank)[: len(largest_urns) - excess]
    elif excess < 0:
        spare = sorted(set(plan.findings[largest]) - set(largest_urns), key=_urn_rank)
        largest_urns += spare[:-excess]
    order = {urn: index for index, urn in enumerate(plan.findings[largest])}
    findings = {**measured.findings, largest: tuple(sorted(largest_urns, key=order.__getitem__))}
    scans[MEASURED_SCAN_NUMBER - 1] = dataclasses.replace(measured, findings=findings)
    return dataclasses.replace(scenario, scans=tuple(scans))


def _sample_plan(plan: ScanPlan, share: float) -> ScanPlan:
    findings = {}
    for rule, urns in plan.findings.items():
        sampled = tuple(urn for urn in urns if _urn_rank(urn) < share)
        # A finding keeps at least one resource, so the number of findings stays as it is.
        findings[rule] = sampled or (min(urns, key=_urn_rank),)
    return dataclasses.replace(plan, findings=findings)


def _urn_rank(urn: str) -> float:
    """Return a number in [0, 1) fixed by the URN alone."""
    return zlib.crc32(urn.encode()) / 2**32


def scan_size(scenario: Scenario, scan_number: int) -> tuple[int, int]:
    """Return the findings and affected resources of a scan of the scenario."""
    plan = scenario.scan_plan(scan_number)
    return len(plan.findings), _pairs(plan)


def minimum_requests(
    scenario: Scenario,
    scan_number: int,
    *,
    resource_detail_min_severity: Severity,
    alert_min_severity: Severity,
) -> RequestCounts:
    """Count the fewest requests a cycle needs to trigger scan `scan_number` and read it.

    - one POST that starts the scan;
    - polls: the scan reads as running to `in_progress_polls` polls, and the next poll reads
      it as ended;
    - finding pages: the get-scan listing reports no total, so paging ends at a short or empty
      page, which makes findings // 200 + 1 pages;
    - resource pages: ceil(n / 200) for each finding at or above the detail severity, because
      the finding's `affected_resources_count` tells when the last one has arrived;
    - settings pages: one (no suppressions are set) when the diff against the scan before has
      something to alert, which is when the cycle needs the suppressions; else none.
    """
    plan = scenario.scan_plan(scan_number)
    severities = _severities(scenario, plan)
    resource_pages = sum(
        math.ceil(len(urns) / PER_PAGE)
        for rule, urns in plan.findings.items()
        if severities[rule] >= resource_detail_min_severity
    )
    previous = scenario.scan_plan(scan_number - 1) if scan_number > 1 else None
    alerting = _has_alert_candidates(scenario, previous, plan, alert_min_severity)
    return RequestCounts(
        triggers=1,
        polls=plan.in_progress_polls + 1,
        finding_pages=len(plan.findings) // PER_PAGE + 1,
        resource_pages=resource_pages,
        settings_pages=1 if alerting else 0,
    )


def _severities(scenario: Scenario, plan: ScanPlan) -> dict[str, Severity]:
    return {
        rule: plan.severity_overrides.get(rule, scenario.rules_by_uuid[rule].severity)
        for rule in plan.findings
    }


def _has_alert_candidates(
    scenario: Scenario, previous: ScanPlan | None, plan: ScanPlan, threshold: Severity
) -> bool:
    """Tell whether the scan has a new or escalated (rule, resource) pair at `threshold` or
    above, compared with the scan before (every pair is new on the first scan)."""
    severities = _severities(scenario, plan)
    before = _severities(scenario, previous) if previous else {}
    for rule, urns in plan.findings.items():
        if severities[rule] < threshold:
            continue
        if rule not in before or severities[rule] > before[rule]:
            return True
        assert previous is not None
        if set(urns) - set(previous.findings[rule]):
            return True
    return False
