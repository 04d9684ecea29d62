"""Paging through the simulator: page sizes at the edges, and next links and totals that lie."""

from __future__ import annotations

import math

import pytest

from service.digitalocean import SecurityClient
from service.simulator import FaultKind, Simulator
from tests.digitalocean.simulated import client_for, droplet, sized_scenario
from tests.support.simulators import SimulatorFactory

EDGE_COUNTS = [0, 1, 200, 201, 450]


async def created_scan_id(client: SecurityClient) -> str:
    scan = await client.create_scan()
    for _ in range(20):
        if (await client.get_scan(scan.id, per_page=1)).status.is_terminal:
            return scan.id
    raise AssertionError(f"scan {scan.id} did not finish after 20 polls")


def add_scans(simulator: Simulator, count: int) -> None:
    for _ in range(count):
        simulator.state.create_scan()


def add_suppressions(simulator: Simulator, count: int) -> None:
    rule = simulator.scenario.rules[0]
    simulator.state.add_suppressions(rule, [droplet(number).urn for number in range(count)])


@pytest.mark.parametrize("count", EDGE_COUNTS)
async def test_collect_findings_edge_counts(make_simulator: SimulatorFactory, count: int) -> None:
    simulator = await make_simulator(sized_scenario([1] * count))
    async with client_for(simulator) as client:
        scan_id = await created_scan_id(client)
        polls = client.stats.requests_for("get_scan")

        collected = await client.collect_findings(scan_id)

    # GET scan has no links or total, so paging ends at the first short or empty page.
    assert len(collected.items) == count
    assert collected.complete
    assert client.stats.requests_for("get_scan") - polls == count // 200 + 1


@pytest.mark.parametrize("count", [1, 200, 201, 450])
async def test_collect_affected_resources_edge_counts(
    make_simulator: SimulatorFactory, count: int
) -> None:
    simulator = await make_simulator(sized_scenario([count]))
    async with client_for(simulator) as client:
        scan_id = await created_scan_id(client)
        finding = (await client.collect_findings(scan_id)).items[0]

        collected = await client.collect_affected_resources(
            scan_id, finding.finding_uuid, expected=finding.affected_resources_count
        )

    # The expected count ends paging on a full last page without asking for an empty one.
    assert len(collected.items) == count
    assert collected.complete
    assert client.stats.requests_for("list_affected_resources") == math.ceil(count / 200)


async def test_collect_affected_resources_zero_expected_sends_nothing(
    simulator: Simulator,
) -> None:
    async with client_for(simulator) as client:
        collected = await client.collect_affected_resources("any-scan", "any-finding", expected=0)

    assert collected.items == ()
    assert collected.complete
    assert simulator.stats.total == 0


async def test_affected_resources_without_expected_count(
    make_simulator: SimulatorFactory,
) -> None:
    simulator = await make_simulator(sized_scenario([400]))
    async with client_for(simulator) as client:
        scan_id = await created_scan_id(client)
        finding = (await client.collect_findings(scan_id)).items[0]

        collected = await client.collect_affected_resources(scan_id, finding.finding_uuid)

    assert len(collected.items) == 400
    assert collected.complete
    assert client.stats.requests_for("list_affected_resources") == 3


@pytest.mark.parametrize("count", EDGE_COUNTS)
async def test_list_scans_edge_counts(simulator: Simulator, count: int) -> None:
    add_scans(simulator, count)
    async with client_for(simulator) as client:
        listing = await client.list_scans()

    assert len(listing.items) == count
    assert listing.complete
    assert client.stats.requests_for("list_scans") == max(1, math.ceil(count / 200))


@pytest.mark.parametrize("count", EDGE_COUNTS)
async def test_get_settings_edge_counts(make_simulator: SimulatorFactory, count: int) -> None:
    simulator = await make_simulator(sized_scenario([1], team_size=max(count, 1)))
    add_suppressions(simulator, count)
    async with client_for(simulator) as client:
        settings = await client.get_settings()

    assert len(settings.suppressions) == count
    assert settings.suppressions_complete
    assert client.stats.requests_for("get_settings") == max(1, math.ceil(count / 200))


async def test_list_scans_missing_links_pages_by_number(simulator: Simulator) -> None:
    add_scans(simulator, 450)
    simulator.faults.add("list_scans", FaultKind.MISSING_LINKS, times=None)
    async with client_for(simulator) as client:
        listing = await client.list_scans()

    assert len(listing.items) == 450
    assert listing.complete
    assert client.stats.requests_for("list_scans") == 3


async def test_get_settings_missing_links_pages_by_number(
    make_simulator: SimulatorFactory,
) -> None:
    simulator = await make_simulator(sized_scenario([1], team_size=201))
    add_suppressions(simulator, 201)
    simulator.faults.add("get_settings", FaultKind.MISSING_LINKS, times=None)
    async with client_for(simulator) as client:
        settings = await client.get_settings()

    assert len(settings.suppressions) == 201
    assert settings.suppressions_complete


async def test_list_scans_repeating_next_link_is_incomplete(simulator: Simulator) -> None:
    add_scans(simulator, 450)
    simulator.faults.add("list_scans", FaultKind.REPEATED_NEXT)
    async with client_for(simulator) as client:
        listing = await client.list_scans()

    assert len(listing.items) == 200
    assert not listing.complete
    assert any("repeated" in problem for problem in listing.problems)
    assert client.stats.requests_for("list_scans") == 1


async def test_get_settings_repeating_next_link_is_incomplete(
    make_simulator: SimulatorFactory,
) -> None:
    simulator = await make_simulator(sized_scenario([1], team_size=201))
    add_suppressions(simulator, 201)
    simulator.faults.add("get_settings", FaultKind.REPEATED_NEXT)
    async with client_for(simulator) as client:
        settings = await client.get_settings()

    assert not settings.suppressions_complete
    assert settings.problems


async def test_list_scans_total_beyond_pages_is_incomplete(simulator: Simulator) -> None:
    add_scans(simulator, 201)
    simulator.faults.add("list_scans", FaultKind.INFLATED_TOTAL, times=None, total_excess=100)
    async with client_for(simulator) as client:
        listing = await client.list_scans()

    assert len(listing.items) == 201
    assert not listing.complete
    assert "201 of 301 arrived" in listing.problems[-1]


async def test_inflated_resource_count_makes_resources_incomplete(
    make_simulator: SimulatorFactory,
) -> None:
    simulator = await make_simulator(sized_scenario([5]))
    async with client_for(simulator) as client:
        scan_id = await created_scan_id(client)
        simulator.faults.add("get_scan", FaultKind.INFLATED_TOTAL, total_excess=3)
        finding = (await client.collect_findings(scan_id)).items[0]

        collected = await client.collect_affected_resources(
            scan_id, finding.finding_uuid, expected=finding.affected_resources_count
        )

    assert finding.affected_resources_count == 8
    assert len(collected.items) == 5
    assert not collected.complete
    assert "5 of 8 arrived" in collected.problems[0]


async def test_latest_scan_changing_while_paging_is_incomplete(
    make_simulator: SimulatorFactory,
) -> None:
    simulator = await make_simulator(sized_scenario([1] * 250))
    async with client_for(simulator) as client:
        await created_scan_id(client)
        stream = client.iter_latest_findings()
        findings = []
        async for finding in stream:
            findings.append(finding)
            if len(findings) == 1:
                simulator.state.create_scan()  # a new scan starts between the two pages

    assert len(findings) == 200
    assert not stream.complete
    assert "described scan" in stream.problems[0]
