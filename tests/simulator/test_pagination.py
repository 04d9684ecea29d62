"""Pagination of scans, findings, affected resources; links, meta and out-of-range values."""

from __future__ import annotations

import math
from typing import Any

import pytest
from yarl import URL

from service.digitalocean.models import Severity
from service.simulator import Resource, Rule, ScanPlan, Scenario, Simulator
from tests.simulator.calls import SCANS, ApiCaller, api_caller
from tests.support.simulators import SimulatorFactory


def wide_scenario(rule_count: int, resource_count: int) -> Scenario:
    """A team whose scans report `rule_count` findings, each on every resource."""
    team = tuple(
        Resource(f"do:droplet:{number}", f"droplet-{number}", "Droplet")
        for number in range(1, resource_count + 1)
    )
    rules = tuple(
        Rule(f"00000000-0000-4000-8000-{number:012d}", f"Rule {number:04d}", Severity.MEDIUM)
        for number in range(1, rule_count + 1)
    )
    findings = {rule.uuid: tuple(resource.urn for resource in team) for rule in rules}
    return Scenario(name="wide", resources=team, rules=rules, scans=(ScanPlan(findings=findings),))


async def collect_scans(api: ApiCaller, per_page: int) -> tuple[list[Any], list[dict[str, Any]]]:
    """Follow `next` links from page 1; return the scans and every page body."""
    url: str | None = f"{SCANS}?per_page={per_page}"
    scans: list[Any] = []
    bodies = []
    while url is not None:
        reply = await api.get(url)
        assert reply.status == 200, reply.text
        bodies.append(reply.json)
        scans.extend(reply.json["scans"])
        url = reply.json.get("links", {}).get("pages", {}).get("next")
    return scans, bodies


@pytest.mark.parametrize("count", [0, 1, 20, 200, 201, 450])
async def test_list_scans_pages_cover_every_scan(simulator: Simulator, count: int) -> None:
    for _ in range(count):
        simulator.state.create_scan()
    async with api_caller(simulator) as api:
        default_page = await api.get(SCANS)
        scans, bodies = await collect_scans(api, per_page=200)

    assert len(default_page.json["scans"]) == min(count, 20)
    assert len(scans) == count
    assert len({scan["id"] for scan in scans}) == count
    assert len(bodies) == max(1, math.ceil(count / 200))
    assert all(body["meta"] == {"total": count} for body in bodies)
    assert ("links" in default_page.json) is (count > 20)


@pytest.mark.parametrize("count", [0, 1, 20])
async def test_list_scans_single_page_has_no_links(simulator: Simulator, count: int) -> None:
    for _ in range(count):
        simulator.state.create_scan()
    async with api_caller(simulator) as api:
        reply = await api.get(SCANS, params={"per_page": "20"})

    assert "links" not in reply.json


async def test_list_scans_links_keep_per_page(simulator: Simulator) -> None:
    for _ in range(45):
        simulator.state.create_scan()
    async with api_caller(simulator) as api:
        middle = await api.get(SCANS, params={"per_page": "10", "page": "3"})

    pages = middle.json["links"]["pages"]
    assert set(pages) == {"first", "prev", "next", "last"}
    expected_pages = {"first": "1", "prev": "2", "next": "4", "last": "5"}
    for name, page in expected_pages.items():
        url = URL(pages[name])
        assert str(url.origin()) == simulator.url
        assert url.path == SCANS
        assert url.query["page"] == page
        assert url.query["per_page"] == "10"


async def test_list_scans_first_page_has_only_forward_links(simulator: Simulator) -> None:
    for _ in range(21):
        simulator.state.create_scan()
    async with api_caller(simulator) as api:
        first = await api.get(SCANS)
        last = await api.get(SCANS, params={"page": "2"})

    assert set(first.json["links"]["pages"]) == {"next", "last"}
    assert set(last.json["links"]["pages"]) == {"first", "prev"}
    assert len(last.json["scans"]) == 1


async def test_list_scans_page_past_end_is_empty(simulator: Simulator) -> None:
    for _ in range(25):
        simulator.state.create_scan()
    async with api_caller(simulator) as api:
        reply = await api.get(SCANS, params={"page": "9"})

    assert reply.status == 200
    assert reply.json["scans"] == []
    assert reply.json["meta"] == {"total": 25}
    assert URL(reply.json["links"]["pages"]["prev"]).query["page"] == "2"


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"per_page": "0"}, "per_page"),
        ({"per_page": "201"}, "per_page"),
        ({"per_page": "ten"}, "per_page"),
        ({"page": "0"}, "page"),
        ({"page": "-1"}, "page"),
    ],
)
async def test_out_of_range_paging_is_bad_request(
    simulator: Simulator, params: dict[str, str], named: str
) -> None:
    async with api_caller(simulator) as api:
        reply = await api.get(SCANS, params=params)

    assert reply.status == 400
    assert reply.json["id"] == "bad_request"
    assert reply.json["message"].startswith(named)


async def page_through(api: ApiCaller, path: str, key: str, per_page: int) -> list[list[Any]]:
    """Request pages until a short or empty one, as a client without links must."""
    pages = []
    for page in range(1, 100):
        reply = await api.get(path, params={"page": str(page), "per_page": str(per_page)})
        assert reply.status == 200, reply.text
        body = reply.json["scan"]["findings"] if key == "findings" else reply.json[key]
        assert "links" not in reply.json
        assert "meta" not in reply.json
        pages.append(body)
        if len(body) < per_page:
            return pages
    raise AssertionError("paging did not end")


@pytest.mark.parametrize(("count", "per_page"), [(0, 20), (1, 20), (201, 200), (450, 200)])
async def test_get_scan_pages_findings(
    make_simulator: SimulatorFactory, count: int, per_page: int
) -> None:
    simulator = await make_simulator(wide_scenario(count, 1))
    async with api_caller(simulator) as api:
        scan = await api.create_scan()
        pages = await page_through(api, f"{SCANS}/{scan['id']}", "findings", per_page)

    findings = [finding for page in pages for finding in page]
    assert len(findings) == count
    assert len({finding["rule_uuid"] for finding in findings}) == count
    assert len(pages) == count // per_page + 1


async def test_latest_scan_pages_findings(make_simulator: SimulatorFactory) -> None:
    simulator = await make_simulator(wide_scenario(45, 1))
    async with api_caller(simulator) as api:
        await api.create_scan()
        pages = await page_through(api, f"{SCANS}/latest", "findings", 20)

    assert [len(page) for page in pages] == [20, 20, 5]


@pytest.mark.parametrize(("count", "per_page"), [(1, 20), (20, 20), (200, 200), (450, 200)])
async def test_affected_resources_pages(
    make_simulator: SimulatorFactory, count: int, per_page: int
) -> None:
    simulator = await make_simulator(wide_scenario(1, count))
    async with api_caller(simulator) as api:
        scan = await api.create_scan()
        rule_uuid = scan["findings"][0]["rule_uuid"]
        path = f"{SCANS}/{scan['id']}/findings/{rule_uuid}/affected_resources"
        pages = await page_through(api, path, "affected_resources", per_page)

    resources = [resource["urn"] for page in pages for resource in page]
    assert len(resources) == count
    assert len(set(resources)) == count
    assert scan["findings"][0]["affected_resources_count"] == count
