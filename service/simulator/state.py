"""The simulator's mutable state: created scans, suppressions, false positives and the plan.

A scan takes its findings from the scenario when it is created. It leaves out false-positive
resources, suppressed (rule, resource) pairs and resources outside the scan's `resources` list,
so suppressions and false positives added later change only later scans.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from service.digitalocean.models import Severity
from service.simulator.clock import Clock
from service.simulator.scenario import (
    PlanDowngrade,
    Resource,
    Rule,
    ScanOutcome,
    ScanPlan,
    Scenario,
    TierCoverage,
    resource_type_name,
)

IN_PROGRESS = "IN_PROGRESS"
SCAN_NOT_RUN = "SCAN_NOT_RUN"

_SEVERITY_ORDER = {Severity.CRITICAL: 0, Severity.HIGH: 1, Severity.MEDIUM: 2, Severity.LOW: 3}


@dataclass(frozen=True, slots=True)
class SimulatedFinding:
    """One rule's result in one scan, with the resources it affects."""

    rule: Rule
    severity: Severity
    found_at_s: float
    resources: tuple[Resource, ...]


@dataclass(slots=True)
class SimulatedScan:
    """A created scan. `findings` is fixed at creation and shown once the scan completes."""

    id: str
    number: int
    created_at_s: float
    plan: ScanPlan
    findings: tuple[SimulatedFinding, ...]
    polls: int = 0
    finished_at_s: float | None = None
    findings_by_rule: dict[str, SimulatedFinding] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.findings_by_rule = {finding.rule.uuid: finding for finding in self.findings}

    @property
    def status(self) -> str:
        """The status as of the last observation: IN_PROGRESS or the plan's outcome."""
        if self.finished_at_s is None:
            return IN_PROGRESS
        return self.plan.outcome.value

    @property
    def completed(self) -> bool:
        return self.status == ScanOutcome.COMPLETED.value

    def observe(self, now_s: float, *, poll: bool) -> str:
        """Return the status now; a poll that finds the scan running counts toward its end."""
        if self.finished_at_s is None and self._may_finish(now_s):
            self.finished_at_s = now_s
        if self.finished_at_s is None and poll:
            self.polls += 1
        return self.status

    def _may_finish(self, now_s: float) -> bool:
        if self.plan.outcome is ScanOutcome.IN_PROGRESS:
            return False
        waited_long_enough = now_s - self.created_at_s >= self.plan.in_progress_s
        return waited_long_enough and self.polls >= self.plan.in_progress_polls


@dataclass(frozen=True, slots=True)
class SuppressionRecord:
    """A suppression as the settings call lists it."""

    id: str
    rule_uuid: str
    rule_name: str
    urn: str
    resource_id: str
    resource_type: str


class SimulatorState:
    """Everything the simulated team has done through the API so far."""

    def __init__(self, scenario: Scenario, clock: Clock) -> None:
        self.scenario = scenario
        self._clock = clock
        self.scans: list[SimulatedScan] = []
        self._scans_by_id: dict[str, SimulatedScan] = {}
        self.suppressions: dict[str, SuppressionRecord] = {}
        self.false_positive_urns: dict[str, None] = {}
        self.tier_coverage: dict[str, TierCoverage] = dict(scenario.tier_coverage)
        self.plan_downgrades: dict[str, PlanDowngrade] = dict(scenario.plan_downgrades)
        # When each rule's current run of completed scans began, for `found_at`.
        self._open_since_s: dict[str, float] = {}

    def create_scan(self, resource_urns: Iterable[str] | None = None) -> SimulatedScan:
        """Create the next scan; `resource_urns` limits it to those resources."""
        number = len(self.scans) + 1
        plan = self.scenario.scan_plan(number)
        now_s = self._clock.now()
        findings = self._snapshot(plan, now_s, set(resource_urns) if resource_urns else None)
        scan = SimulatedScan(
            id=str(uuid.uuid4()), number=number, created_at_s=now_s, plan=plan, findings=findings
        )
        scan.observe(now_s, poll=False)
        self.scans.append(scan)
        self._scans_by_id[scan.id] = scan
        return scan

    def scan(self, scan_id: str) -> SimulatedScan | None:
        return self._scans_by_id.get(scan_id.lower())

    def latest_scan(self) -> SimulatedScan | None:
        return self.scans[-1] if self.scans else None

    def now(self) -> float:
        return self._clock.now()

    def add_false_positive(self, urn: str) -> None:
        """Exclude `urn` from every later scan."""
        self.false_positive_urns[urn] = None

    def add_suppressions(self, rule: Rule, urns: Iterable[str]) -> list[SuppressionRecord]:
        """Suppress `rule` for each URN; an existing suppression is returned, not repeated."""
        existing = {(record.rule_uuid, record.urn): record for record in self.suppressions.values()}
        records = []
        for urn in dict.fromkeys(urns):
            record = existing.get((rule.uuid, urn))
            if record is None:
                record = self._new_suppression(rule, urn)
                self.suppressions[record.id] = record
            records.append(record)
        return records

    def delete_suppression(self, suppression_id: str) -> bool:
        """Remove a suppression; return False when there is none with that id."""
        return self.suppressions.pop(suppression_id.lower(), None) is not None

    def _new_suppression(self, rule: Rule, urn: str) -> SuppressionRecord:
        resource = self.scenario.resources_by_urn.get(urn)
        return SuppressionRecord(
            id=str(uuid.uuid4()),
            rule_uuid=rule.uuid,
            rule_name=rule.name,
            urn=urn,
            resource_id=urn.split(":", 2)[2],
            resource_type=resource.type if resource else resource_type_name(urn),
        )

    def _snapshot(
        self, plan: ScanPlan, now_s: float, only_urns: set[str] | None
    ) -> tuple[SimulatedFinding, ...]:
        suppressed = {(record.rule_uuid, record.urn) for record in self.suppressions.values()}
        findings = []
        for rule_uuid, urns in plan.findings.items():
            kept = [
                urn
                for urn in urns
                if urn not in self.false_positive_urns
                and (rule_uuid, urn) not in suppressed
                and (only_urns is None or urn in only_urns)
            ]
            if kept:
                findings.append(self._finding(plan, rule_uuid, kept, now_s))
        findings.sort(key=lambda finding: (_SEVERITY_ORDER[finding.severity], finding.rule.name))
        if plan.outcome is ScanOutcome.COMPLETED:
            self._open_since_s = {f.rule.uuid: f.found_at_s for f in findings}
        return tuple(findings)

    def _finding(
        self, plan: ScanPlan, rule_uuid: str, urns: list[str], now_s: float
    ) -> SimulatedFinding:
        rule = self.scenario.rules_by_uuid[rule_uuid]
        resources = self.scenario.resources_by_urn
        return SimulatedFinding(
            rule=rule,
            severity=plan.severity_overrides.get(rule_uuid, rule.severity),
            found_at_s=self._open_since_s.get(rule_uuid, now_s),
            resources=tuple(resources[urn] for urn in urns),
        )


def tier_coverage_from_request(
    data: Mapping[str, Mapping[str, list[str]]],
) -> dict[str, TierCoverage]:
    """Build stored tier coverage from a validated PUT body."""
    return {
        tier: TierCoverage(tuple(value.get("resources", [])), tuple(value.get("tags", [])))
        for tier, value in data.items()
    }
