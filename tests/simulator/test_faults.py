"""Fault injection: each kind, scripting order, random mixes, and the request stats."""

from __future__ import annotations

import json

import aiohttp
import pytest

from service.simulator import FAULT_HEADER, FakeClock, FaultKind, Simulator
from tests.simulator.calls import SCANS, SETTINGS, api_caller
from tests.support.simulators import SimulatorFactory


@pytest.mark.parametrize(
    ("kind", "status", "error_id"),
    [
        (FaultKind.SERVER_ERROR, 500, "server_error"),
        (FaultKind.BAD_GATEWAY, 502, "bad_gateway"),
        (FaultKind.SERVICE_UNAVAILABLE, 503, "service_unavailable"),
        (FaultKind.RATE_LIMITED, 429, "too_many_requests"),
    ],
)
async def test_status_fault_returns_error(
    simulator: Simulator, kind: FaultKind, status: int, error_id: str
) -> None:
    simulator.faults.add("create_scan", kind)
    async with api_caller(simulator) as api:
        failed = await api.post(SCANS)
        retried = await api.post(SCANS)

    assert failed.status == status
    assert failed.json["id"] == error_id
    assert failed.headers[FAULT_HEADER] == kind.value
    assert "ratelimit-remaining" in failed.headers
    assert retried.status == 201
    assert len(simulator.state.scans) == 1


async def test_rate_limited_fault_sets_retry_after(simulator: Simulator) -> None:
    simulator.faults.add("list_scans", FaultKind.RATE_LIMITED, retry_after_s=7)
    async with api_caller(simulator) as api:
        reply = await api.get(SCANS)

    assert reply.status == 429
    assert reply.headers["retry-after"] == "7"


async def test_rate_limited_reset_past_fault(make_simulator: SimulatorFactory) -> None:
    clock = FakeClock()
    simulator = await make_simulator(clock=clock)
    simulator.faults.add("get_settings", FaultKind.RATE_LIMITED_RESET_PAST, reset_offset_s=5)
    async with api_caller(simulator) as api:
        reply = await api.get(SETTINGS)

    assert reply.status == 429
    assert "retry-after" not in reply.headers
    assert reply.headers["ratelimit-remaining"] == "0"
    assert int(reply.headers["ratelimit-reset"]) == int(clock.now()) - 5


async def test_rate_limited_reset_future_fault(make_simulator: SimulatorFactory) -> None:
    clock = FakeClock()
    simulator = await make_simulator(clock=clock)
    simulator.faults.add("get_settings", FaultKind.RATE_LIMITED_RESET_FUTURE, reset_offset_s=3)
    async with api_caller(simulator) as api:
        reply = await api.get(SETTINGS)

    assert reply.status == 429
    assert "retry-after" not in reply.headers
    assert int(reply.headers["ratelimit-reset"]) == int(clock.now()) + 3


async def test_delay_fault_keeps_response_unmarked(simulator: Simulator) -> None:
    simulator.faults.add("list_scans", FaultKind.DELAY, delay_s=0.05)
    async with api_caller(simulator) as api:
        reply = await api.get(SCANS)

    assert reply.status == 200
    assert FAULT_HEADER not in reply.headers
    assert simulator.faults.applied[0].kind is FaultKind.DELAY


async def test_drop_before_fault_does_not_create_scan(simulator: Simulator) -> None:
    simulator.faults.add("create_scan", FaultKind.DROP_BEFORE)
    async with api_caller(simulator) as api:
        with pytest.raises(aiohttp.ClientError):
            await api.post(SCANS)

    assert simulator.state.scans == []
    assert simulator.stats.count("create_scan", 0) == 1


async def test_drop_after_fault_creates_scan_then_drops(simulator: Simulator) -> None:
    simulator.faults.add("create_scan", FaultKind.DROP_AFTER)
    async with api_caller(simulator) as api:
        with pytest.raises(aiohttp.ClientError):
            await api.post(SCANS)
        listed = await api.get(SCANS)

    assert len(simulator.state.scans) == 1
    assert listed.json["scans"][0]["id"] == simulator.state.scans[0].id


async def test_malformed_body_fault_is_not_json(simulator: Simulator) -> None:
    simulator.faults.add("latest_scan", FaultKind.MALFORMED_BODY)
    async with api_caller(simulator) as api:
        reply = await api.get(f"{SCANS}/latest")

    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.text)


async def test_truncated_body_fault_cuts_real_body(simulator: Simulator) -> None:
    simulator.state.create_scan()
    async with api_caller(simulator) as api:
        whole = await api.get(SCANS)
        simulator.faults.add("list_scans", FaultKind.TRUNCATED_BODY)
        cut = await api.get(SCANS)

    assert 0 < len(cut.text) < len(whole.text)
    assert whole.text.startswith(cut.text[:10])
    with pytest.raises(json.JSONDecodeError):
        json.loads(cut.text)


async def test_wrong_shape_fault_returns_list(simulator: Simulator) -> None:
    simulator.faults.add("get_settings", FaultKind.WRONG_SHAPE)
    async with api_caller(simulator) as api:
        reply = await api.get(SETTINGS)

    assert reply.status == 200
    assert isinstance(reply.json, list)


async def test_lowercase_enums_fault(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        scan = await api.create_scan()
        await api.get(f"{SCANS}/{scan['id']}")
        simulator.faults.add("get_scan", FaultKind.LOWERCASE_ENUMS)
        reply = await api.get(f"{SCANS}/{scan['id']}")

    assert reply.json["scan"]["status"] == "completed"
    severities = {finding["severity"] for finding in reply.json["scan"]["findings"]}
    assert severities <= {"critical", "high", "medium", "low"}
    assert severities


async def test_bare_scan_fault_drops_wrapper(simulator: Simulator) -> None:
    simulator.faults.add("create_scan", FaultKind.BARE_SCAN)
    async with api_caller(simulator) as api:
        reply = await api.post(SCANS)

    assert reply.status == 201
    assert reply.json["id"] == simulator.state.scans[0].id
    assert reply.json["status"] == "IN_PROGRESS"


async def test_missing_links_fault(simulator: Simulator) -> None:
    for _ in range(30):
        simulator.state.create_scan()
    simulator.faults.add("list_scans", FaultKind.MISSING_LINKS)
    async with api_caller(simulator) as api:
        reply = await api.get(SCANS)

    assert "links" not in reply.json
    assert reply.json["meta"]["total"] == 30


async def test_repeated_next_fault_points_at_same_page(simulator: Simulator) -> None:
    for _ in range(30):
        simulator.state.create_scan()
    simulator.faults.add("list_scans", FaultKind.REPEATED_NEXT)
    async with api_caller(simulator) as api:
        url = f"{simulator.url}{SCANS}?page=1&per_page=20"
        reply = await api.get(url)

    assert reply.json["links"]["pages"]["next"] == url


async def test_inflated_total_fault_on_list_and_scan(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        scan = await api.create_scan()
        real = await api.finish_scan(scan["id"])
        simulator.faults.add("list_scans", FaultKind.INFLATED_TOTAL, total_excess=4)
        simulator.faults.add("get_scan", FaultKind.INFLATED_TOTAL, total_excess=4)
        listed = await api.get(SCANS)
        inflated = await api.get(f"{SCANS}/{scan['id']}", params={"per_page": "200"})

    assert listed.json["meta"]["total"] == 5
    real_counts = [finding["affected_resources_count"] for finding in real["findings"]]
    counts = [f["affected_resources_count"] for f in inflated.json["scan"]["findings"]]
    assert counts == [count + 4 for count in real_counts]


async def test_inflated_total_fault_on_settings(simulator: Simulator) -> None:
    simulator.faults.add("get_settings", FaultKind.INFLATED_TOTAL, total_excess=2)
    async with api_caller(simulator) as api:
        reply = await api.get(SETTINGS)

    assert reply.json["settings"]["suppressions"]["meta"]["total"] == 2


async def test_scripted_faults_apply_in_order(simulator: Simulator) -> None:
    simulator.faults.add("list_scans", FaultKind.SERVER_ERROR, times=2)
    simulator.faults.add("list_scans", FaultKind.BAD_GATEWAY)
    simulator.faults.add("get_settings", FaultKind.SERVICE_UNAVAILABLE)
    async with api_caller(simulator) as api:
        statuses = [(await api.get(SCANS)).status for _ in range(4)]
        settings = await api.get(SETTINGS)

    assert statuses == [500, 500, 502, 200]
    assert settings.status == 503
    assert simulator.faults.pending() == 0


async def test_any_route_fault_skips_routes_it_cannot_change(simulator: Simulator) -> None:
    simulator.faults.add("*", FaultKind.BARE_SCAN)
    async with api_caller(simulator) as api:
        listed = await api.get(SCANS)
        created = await api.post(SCANS)

    assert "scans" in listed.json
    assert "id" in created.json
    assert simulator.faults.pending() == 0


async def test_unlimited_fault_applies_until_cleared(simulator: Simulator) -> None:
    simulator.faults.add("list_scans", FaultKind.SERVER_ERROR, times=None)
    async with api_caller(simulator) as api:
        failing = [(await api.get(SCANS)).status for _ in range(3)]
        simulator.faults.clear()
        recovered = await api.get(SCANS)

    assert failing == [500, 500, 500]
    assert recovered.status == 200


@pytest.mark.parametrize(
    ("route", "kind", "times", "message"),
    [
        ("list_scan", FaultKind.SERVER_ERROR, 1, "unknown route"),
        ("list_scans", "explode", 1, "unknown fault kind"),
        ("list_scans", FaultKind.BARE_SCAN, 1, "cannot change responses of route list_scans"),
        ("list_scans", FaultKind.SERVER_ERROR, 0, "times must be at least 1"),
    ],
)
def test_fault_add_rejects_bad_arguments(
    simulator: Simulator, route: str, kind: FaultKind | str, times: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        simulator.faults.add(route, kind, times=times)


async def random_statuses(make_simulator: SimulatorFactory, seed: int) -> list[int]:
    simulator = await make_simulator()
    simulator.faults.add_random(
        0.5, [FaultKind.SERVER_ERROR, FaultKind.BAD_GATEWAY, FaultKind.BARE_SCAN], seed=seed
    )
    async with api_caller(simulator) as api:
        return [(await api.get(SCANS)).status for _ in range(30)]


async def test_random_faults_repeat_for_seed(make_simulator: SimulatorFactory) -> None:
    first = await random_statuses(make_simulator, seed=3)
    second = await random_statuses(make_simulator, seed=3)
    other = await random_statuses(make_simulator, seed=4)

    assert first == second
    assert first != other
    assert set(first) == {200, 500, 502}


async def test_random_faults_limited_to_routes(simulator: Simulator) -> None:
    simulator.faults.add_random(1.0, [FaultKind.SERVER_ERROR], seed=1, route_names=["get_settings"])
    async with api_caller(simulator) as api:
        listed = await api.get(SCANS)
        settings = await api.get(SETTINGS)

    assert listed.status == 200
    assert settings.status == 500


def test_random_faults_reject_bad_rate(simulator: Simulator) -> None:
    with pytest.raises(ValueError, match="rate must be between 0 and 1"):
        simulator.faults.add_random(1.5, [FaultKind.SERVER_ERROR], seed=1)


async def test_stats_count_requests_per_route_and_status(simulator: Simulator) -> None:
    simulator.faults.add("list_scans", FaultKind.SERVER_ERROR)
    async with api_caller(simulator) as api:
        await api.get(SCANS)
        await api.get(SCANS)
        await api.post(SCANS)
        await api.get(SCANS, token="wrong")
        await api.get("/v2/security/elsewhere")

    assert simulator.stats.by_route() == {
        "create_scan": {201: 1},
        "list_scans": {200: 1, 401: 1, 500: 1},
        "unknown": {404: 1},
    }
    assert simulator.stats.count("list_scans") == 3
    assert simulator.stats.count(status=401) == 1
    assert simulator.stats.total == 5
