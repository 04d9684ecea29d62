"""Every operation of SecurityClient against the simulator over real HTTP."""

from __future__ import annotations

import pytest

from service.digitalocean import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    SecurityClient,
)
from service.digitalocean.models import ScanStatus, Severity, TierCoverage
from service.simulator import Simulator
from tests.digitalocean.simulated import client_for, rule_uuid, sized_scenario
from tests.support.simulators import SimulatorFactory


async def finish_scan(client: SecurityClient, scan_id: str) -> None:
    """Poll the scan cheaply until it ends; the simulator ends scans after a few polls."""
    for _ in range(20):
        scan = await client.get_scan(scan_id, per_page=1)
        if scan.status.is_terminal:
            return
    raise AssertionError(f"scan {scan_id} did not finish after 20 polls")


async def test_create_scan_returns_the_new_scan(simulator: Simulator) -> None:
    async with client_for(simulator) as client:
        scan = await client.create_scan()

    assert scan.id == simulator.state.scans[0].id
    assert scan.created_at is not None


async def test_get_scan_per_page_one_returns_one_finding(simulator: Simulator) -> None:
    async with client_for(simulator) as client:
        scan = await client.create_scan()
        await finish_scan(client, scan.id)

        polled = await client.get_scan(scan.id, per_page=1)

    assert polled.status is ScanStatus.COMPLETED
    assert len(polled.findings) == 1


async def test_collect_findings_returns_every_finding(simulator: Simulator) -> None:
    async with client_for(simulator) as client:
        scan = await client.create_scan()
        await finish_scan(client, scan.id)

        collected = await client.collect_findings(scan.id)

    expected_rules = set(simulator.state.scans[0].findings_by_rule)
    assert collected.complete
    assert {finding.rule_uuid for finding in collected.items} == expected_rules


async def test_collect_findings_severity_filter_applies(simulator: Simulator) -> None:
    async with client_for(simulator) as client:
        scan = await client.create_scan()
        await finish_scan(client, scan.id)

        collected = await client.collect_findings(scan.id, severity="high")

    assert collected.items
    assert {finding.severity for finding in collected.items} == {Severity.HIGH}


async def test_collect_affected_resources_returns_every_resource(simulator: Simulator) -> None:
    async with client_for(simulator) as client:
        scan = await client.create_scan()
        await finish_scan(client, scan.id)
        findings = await client.collect_findings(scan.id)
        finding = findings.items[0]

        resources = await client.collect_affected_resources(
            scan.id, finding.finding_uuid, expected=finding.affected_resources_count
        )

    simulated = simulator.state.scans[0].findings_by_rule[finding.rule_uuid]
    assert resources.complete
    assert [resource.urn for resource in resources.items] == [r.urn for r in simulated.resources]


async def test_iter_affected_resources_streams_every_page(
    make_simulator: SimulatorFactory,
) -> None:
    simulator = await make_simulator(sized_scenario([450]))
    async with client_for(simulator) as client:
        scan = await client.create_scan()
        await finish_scan(client, scan.id)

        stream = client.iter_affected_resources(scan.id, rule_uuid(0))
        urns = [resource.urn async for resource in stream]

    assert len(urns) == 450
    assert stream.complete


async def test_get_latest_scan_returns_the_newest(simulator: Simulator) -> None:
    async with client_for(simulator) as client:
        await client.create_scan()
        newest = await client.create_scan()

        latest = await client.get_latest_scan(per_page=1)

    assert latest.id == newest.id


async def test_latest_scan_before_first_scan(simulator: Simulator) -> None:
    async with client_for(simulator) as client:
        latest = await client.get_latest_scan()

    assert latest.status is ScanStatus.SCAN_NOT_RUN
    assert latest.id == ""


async def test_collect_latest_findings_returns_scan_and_findings(simulator: Simulator) -> None:
    async with client_for(simulator) as client:
        scan = await client.create_scan()
        await finish_scan(client, scan.id)

        latest = await client.collect_latest_findings()

    assert latest.scan.id == scan.id
    assert latest.scan.findings == ()
    assert latest.findings.complete
    assert len(latest.findings.items) == len(simulator.state.scans[0].findings)


async def test_list_scans_returns_every_scan_newest_first(simulator: Simulator) -> None:
    async with client_for(simulator) as client:
        first = await client.create_scan()
        second = await client.create_scan()

        listing = await client.list_scans()

    assert listing.complete
    assert [scan.id for scan in listing.items] == [second.id, first.id]


async def test_create_false_positive_excludes_the_resource(simulator: Simulator) -> None:
    urn = simulator.scenario.resources[0].urn
    async with client_for(simulator) as client:
        await client.create_false_positive(urn)

    assert urn in simulator.state.false_positive_urns


async def test_get_settings_returns_coverage_and_suppressions(simulator: Simulator) -> None:
    rule = simulator.scenario.rules[0]
    simulator.state.add_suppressions(rule, [simulator.scenario.resources[0].urn])
    async with client_for(simulator) as client:
        settings = await client.get_settings()

    assert settings.suppressions_complete
    assert [s.rule_uuid for s in settings.suppressions] == [rule.uuid]
    assert set(settings.tier_coverage) == set(simulator.scenario.tier_coverage)


async def test_update_plan_stores_the_coverage(simulator: Simulator) -> None:
    urn = simulator.scenario.resources[0].urn
    coverage = {"basic": TierCoverage(resources=(urn,), tags=("production",))}
    async with client_for(simulator) as client:
        stored = await client.update_plan(coverage)

    assert stored["basic"].resources == (urn,)
    assert stored["basic"].tags == ("production",)


async def test_create_and_delete_suppression_round_trip(simulator: Simulator) -> None:
    rule = simulator.scenario.rules[0]
    urn = simulator.scenario.resources[0].urn
    async with client_for(simulator) as client:
        created = await client.create_suppression(rule.uuid, [urn])
        await client.delete_suppression(created[0].id)

    assert created[0].rule_uuid == rule.uuid
    assert simulator.state.suppressions == {}


async def test_delete_suppression_unknown_id_is_not_found(simulator: Simulator) -> None:
    async with client_for(simulator) as client:
        with pytest.raises(NotFoundError) as raised:
            await client.delete_suppression("6f1c2f6e-0000-4000-8000-000000000000")

    assert raised.value.status == 404
    assert raised.value.operation == "delete_suppression"
    assert raised.value.request_id


async def test_get_scan_unknown_id_is_not_found(simulator: Simulator) -> None:
    async with client_for(simulator) as client:
        with pytest.raises(NotFoundError) as raised:
            await client.get_scan("6f1c2f6e-0000-4000-8000-000000000000")

    assert raised.value.error_id == "not_found"
    assert "check the scan id" in str(raised.value)


async def test_wrong_token_is_an_authentication_error(simulator: Simulator) -> None:
    client = SecurityClient("dop_v1_" + "0" * 64, api_url=simulator.url)
    async with client:
        with pytest.raises(AuthenticationError) as raised:
            await client.list_scans()

    assert raised.value.status == 401
    assert "security:read" in str(raised.value)


async def test_missing_scope_is_an_authentication_error(simulator: Simulator) -> None:
    simulator.add_token("read-only-token-123", scopes=["security:read"])
    async with SecurityClient("read-only-token-123", api_url=simulator.url) as client:
        with pytest.raises(AuthenticationError) as raised:
            await client.create_scan()

    assert raised.value.status == 403
    assert "security:create" in str(raised.value)


async def test_unknown_severity_filter_is_rejected_before_sending(simulator: Simulator) -> None:
    async with client_for(simulator) as client:
        with pytest.raises(ValueError, match="URGENT"):
            await client.get_scan("6f1c2f6e-0000-4000-8000-000000000000", severity="URGENT")

    assert simulator.stats.total == 0


async def test_invalid_urn_is_rejected_before_sending(simulator: Simulator) -> None:
    async with client_for(simulator) as client:
        with pytest.raises(ValueError, match="do:TYPE:ID"):
            await client.create_false_positive("droplet-123")

    assert simulator.stats.total == 0


async def test_unknown_rule_suppression_is_not_found(simulator: Simulator) -> None:
    urn = simulator.scenario.resources[0].urn
    async with client_for(simulator) as client:
        with pytest.raises(NotFoundError):
            await client.create_suppression(rule_uuid(999), [urn])


async def test_bad_request_is_a_bad_request_error(simulator: Simulator) -> None:
    # The client passes tag names through unchecked; the simulator rejects an empty one.
    coverage = {"basic": TierCoverage(tags=("",))}
    async with client_for(simulator) as client:
        with pytest.raises(BadRequestError) as raised:
            await client.update_plan(coverage)

    assert raised.value.status == 400


async def test_stats_and_hook_see_every_response(simulator: Simulator) -> None:
    seen: list[tuple[str, int, int | None]] = []

    def record(operation: str, status: int, elapsed_s: float, remaining: int | None) -> None:
        seen.append((operation, status, remaining))

    async with client_for(simulator, on_response=record) as client:
        await client.create_scan()
        await client.list_scans()

    assert [(operation, status) for operation, status, _ in seen] == [
        ("create_scan", 201),
        ("list_scans", 200),
    ]
    assert all(remaining is not None for _, _, remaining in seen)
    assert client.stats.total_requests == 2
    assert client.stats.requests[("create_scan", "201")] == 1
