"""Scan progression and outcomes, with a fake clock so that no test sleeps."""

from __future__ import annotations

import pytest

from service.digitalocean.models import Severity
from service.simulator import FakeClock, Resource, Rule, ScanOutcome, ScanPlan, Scenario
from tests.simulator.calls import SCANS, api_caller
from tests.support.simulators import SimulatorFactory

RULE_A = Rule(uuid="00000000-0000-4000-8000-00000000000a", name="Rule A", severity=Severity.LOW)
RULE_B = Rule(
    uuid="00000000-0000-4000-8000-00000000000b", name="Rule B", severity=Severity.HIGH, type="IAM"
)
TEAM = (
    Resource("do:droplet:1", "one", "Droplet"),
    Resource("do:droplet:2", "two", "Droplet"),
)


def scenario_of(*plans: ScanPlan) -> Scenario:
    return Scenario(name="progress", resources=TEAM, rules=(RULE_A, RULE_B), scans=plans)


def findings_plan(**options: object) -> ScanPlan:
    findings = {RULE_A.uuid: ("do:droplet:1",), RULE_B.uuid: ("do:droplet:1", "do:droplet:2")}
    return ScanPlan(findings=findings, **options)  # type: ignore[arg-type]


async def test_scan_finishes_after_configured_seconds(make_simulator: SimulatorFactory) -> None:
    clock = FakeClock()
    simulator = await make_simulator(scenario_of(findings_plan(in_progress_s=30)), clock=clock)
    async with api_caller(simulator) as api:
        scan = await api.create_scan()
        simulator.advance(29)
        early = await api.get(f"{SCANS}/{scan['id']}")
        simulator.advance(1)
        done = await api.get(f"{SCANS}/{scan['id']}")

    assert scan["status"] == "IN_PROGRESS"
    assert early.json["scan"]["status"] == "IN_PROGRESS"
    assert done.json["scan"]["status"] == "COMPLETED"


async def test_scan_finishes_after_configured_polls(make_simulator: SimulatorFactory) -> None:
    simulator = await make_simulator(scenario_of(findings_plan(in_progress_polls=3)))
    async with api_caller(simulator) as api:
        scan = await api.create_scan()
        statuses = [
            (await api.get(f"{SCANS}/{scan['id']}")).json["scan"]["status"] for _ in range(4)
        ]

    assert statuses == ["IN_PROGRESS", "IN_PROGRESS", "IN_PROGRESS", "COMPLETED"]


async def test_scan_with_seconds_and_polls_needs_both(make_simulator: SimulatorFactory) -> None:
    plan = findings_plan(in_progress_s=60, in_progress_polls=1)
    simulator = await make_simulator(scenario_of(plan), clock=FakeClock())
    async with api_caller(simulator) as api:
        scan = await api.create_scan()
        path = f"{SCANS}/{scan['id']}"
        polled_early = [(await api.get(path)).json["scan"]["status"] for _ in range(3)]
        simulator.advance(60)
        after_time = (await api.get(path)).json["scan"]["status"]

    assert polled_early == ["IN_PROGRESS"] * 3
    assert after_time == "COMPLETED"


async def test_scan_without_duration_is_terminal_at_creation(
    make_simulator: SimulatorFactory,
) -> None:
    simulator = await make_simulator(scenario_of(findings_plan()))
    async with api_caller(simulator) as api:
        scan = await api.create_scan()

    assert scan["status"] == "COMPLETED"
    assert len(scan["findings"]) == 2


async def test_list_scans_shows_time_based_completion(make_simulator: SimulatorFactory) -> None:
    simulator = await make_simulator(
        scenario_of(findings_plan(in_progress_s=10)), clock=FakeClock()
    )
    async with api_caller(simulator) as api:
        await api.create_scan()
        simulator.advance(10)
        listed = await api.get(SCANS)

    assert listed.json["scans"][0]["status"] == "COMPLETED"


@pytest.mark.parametrize(
    "outcome", [ScanOutcome.FAILED, ScanOutcome.CSPM_NOT_ENABLED], ids=lambda o: o.value
)
async def test_scan_outcome_without_findings(
    make_simulator: SimulatorFactory, outcome: ScanOutcome
) -> None:
    simulator = await make_simulator(scenario_of(findings_plan(outcome=outcome)))
    async with api_caller(simulator) as api:
        scan = await api.create_scan()
        fetched = await api.get(f"{SCANS}/{scan['id']}")
        resources = await api.get(f"{SCANS}/{scan['id']}/findings/{RULE_A.uuid}/affected_resources")

    assert fetched.json["scan"]["status"] == outcome.value
    assert fetched.json["scan"]["findings"] == []
    assert resources.status == 404


async def test_scan_with_in_progress_outcome_never_finishes(
    make_simulator: SimulatorFactory,
) -> None:
    plan = findings_plan(outcome=ScanOutcome.IN_PROGRESS)
    simulator = await make_simulator(scenario_of(plan), clock=FakeClock())
    async with api_caller(simulator) as api:
        scan = await api.create_scan()
        simulator.advance(7 * 24 * 3600)
        statuses = {
            (await api.get(f"{SCANS}/{scan['id']}")).json["scan"]["status"] for _ in range(5)
        }

    assert statuses == {"IN_PROGRESS"}


async def test_nth_scan_uses_nth_plan_then_last_repeats(make_simulator: SimulatorFactory) -> None:
    plans = (
        findings_plan(),
        ScanPlan(outcome=ScanOutcome.FAILED),
        ScanPlan(findings={RULE_A.uuid: ("do:droplet:2",)}),
    )
    simulator = await make_simulator(scenario_of(*plans))
    async with api_caller(simulator) as api:
        scans = [await api.create_scan() for _ in range(5)]

    assert [scan["status"] for scan in scans] == ["COMPLETED", "FAILED"] + ["COMPLETED"] * 3
    assert [len(scan["findings"]) for scan in scans] == [2, 0, 1, 1, 1]


async def test_severity_override_escalates_finding(make_simulator: SimulatorFactory) -> None:
    escalated = findings_plan(severity_overrides={RULE_A.uuid: Severity.CRITICAL})
    simulator = await make_simulator(scenario_of(findings_plan(), escalated))
    async with api_caller(simulator) as api:
        first = await api.create_scan()
        second = await api.create_scan()

    def severity_of(scan: dict[str, object]) -> str:
        findings = scan["findings"]
        assert isinstance(findings, list)
        return str(next(f["severity"] for f in findings if f["rule_uuid"] == RULE_A.uuid))

    assert severity_of(first) == "LOW"
    assert severity_of(second) == "CRITICAL"


async def test_get_scan_filters_by_severity(make_simulator: SimulatorFactory) -> None:
    simulator = await make_simulator(scenario_of(findings_plan()))
    async with api_caller(simulator) as api:
        scan = await api.create_scan()
        high = await api.get(f"{SCANS}/{scan['id']}", params={"severity": "HIGH"})
        critical = await api.get(f"{SCANS}/latest", params={"severity": "CRITICAL"})
        invalid = await api.get(f"{SCANS}/{scan['id']}", params={"severity": "SEVERE"})

    assert [f["rule_uuid"] for f in high.json["scan"]["findings"]] == [RULE_B.uuid]
    assert critical.json["scan"]["findings"] == []
    assert invalid.status == 400
    assert "severity" in invalid.json["message"]


async def test_get_scan_filters_by_type(make_simulator: SimulatorFactory) -> None:
    simulator = await make_simulator(scenario_of(findings_plan()))
    async with api_caller(simulator) as api:
        scan = await api.create_scan()
        cspm = await api.get(f"{SCANS}/{scan['id']}", params={"type": "CSPM"})
        iam = await api.get(f"{SCANS}/latest", params={"type": "iam"})

    assert [f["rule_uuid"] for f in cspm.json["scan"]["findings"]] == [RULE_A.uuid]
    assert [f["rule_uuid"] for f in iam.json["scan"]["findings"]] == [RULE_B.uuid]
