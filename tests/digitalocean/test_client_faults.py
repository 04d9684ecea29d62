"""Retries, rate limits and invalid bodies: the client against the simulator's faults."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from service.digitalocean import (
    ApiConnectionError,
    InvalidResponseError,
    RateLimitedError,
    ServerError,
)
from service.digitalocean.models import ScanStatus, Severity
from service.simulator import FaultKind, Simulator
from tests.digitalocean.simulated import client_for

RATE_LIMIT_FAULTS = [
    FaultKind.RATE_LIMITED,
    FaultKind.RATE_LIMITED_RESET_PAST,
    FaultKind.RATE_LIMITED_RESET_FUTURE,
]
SERVER_FAULTS = [
    FaultKind.SERVER_ERROR,
    FaultKind.BAD_GATEWAY,
    FaultKind.SERVICE_UNAVAILABLE,
]
INVALID_BODY_FAULTS = [
    FaultKind.MALFORMED_BODY,
    FaultKind.TRUNCATED_BODY,
    FaultKind.WRONG_SHAPE,
]


@pytest.mark.parametrize("kind", RATE_LIMIT_FAULTS)
async def test_rate_limited_get_is_retried(simulator: Simulator, kind: FaultKind) -> None:
    simulator.faults.add("list_scans", kind, retry_after_s=1, reset_offset_s=1)
    async with client_for(simulator) as client:
        listing = await client.list_scans()

    assert listing.complete
    assert client.stats.rate_limited == 1
    assert client.stats.retries == 1
    assert simulator.stats.count("list_scans", 429) == 1
    assert simulator.stats.count("list_scans", 200) == 1


async def test_rate_limited_post_is_retried(simulator: Simulator) -> None:
    simulator.faults.add("create_scan", FaultKind.RATE_LIMITED, retry_after_s=1)
    async with client_for(simulator) as client:
        await client.create_scan()

    assert len(simulator.state.scans) == 1
    assert client.stats.rate_limited == 1


async def test_rate_limited_every_time_raises_after_retries(simulator: Simulator) -> None:
    simulator.faults.add("list_scans", FaultKind.RATE_LIMITED_RESET_PAST, times=None)
    async with client_for(simulator, max_retries=2) as client:
        with pytest.raises(RateLimitedError) as raised:
            await client.list_scans()

    assert raised.value.status == 429
    assert raised.value.operation == "list_scans"
    assert simulator.stats.count("list_scans", 429) == 3


@pytest.mark.parametrize("kind", SERVER_FAULTS)
async def test_server_error_on_get_is_retried(simulator: Simulator, kind: FaultKind) -> None:
    simulator.faults.add("get_settings", kind, times=2)
    async with client_for(simulator) as client:
        settings = await client.get_settings()

    assert settings.suppressions_complete
    assert client.stats.retries == 2


async def test_server_error_every_time_raises_server_error(simulator: Simulator) -> None:
    simulator.faults.add("get_settings", FaultKind.SERVICE_UNAVAILABLE, times=None)
    async with client_for(simulator, max_retries=3) as client:
        with pytest.raises(ServerError) as raised:
            await client.get_settings()

    assert raised.value.status == 503
    assert "after 4 attempt(s)" in str(raised.value)
    assert not raised.value.outcome_unknown


@pytest.mark.parametrize("kind", [FaultKind.DROP_BEFORE, FaultKind.DROP_AFTER])
async def test_dropped_connection_on_get_is_retried(simulator: Simulator, kind: FaultKind) -> None:
    simulator.faults.add("list_scans", kind, times=2)
    async with client_for(simulator) as client:
        listing = await client.list_scans()

    assert listing.complete
    assert client.stats.requests[("list_scans", "connection_error")] == 2
    assert client.stats.retries == 2


async def test_dropped_connection_every_time_raises_connection_error(
    simulator: Simulator,
) -> None:
    simulator.faults.add("list_scans", FaultKind.DROP_BEFORE, times=None)
    async with client_for(simulator, max_retries=2) as client:
        with pytest.raises(ApiConnectionError) as raised:
            await client.list_scans()

    assert raised.value.status is None
    assert "after 3 attempt(s)" in str(raised.value)


async def test_timeout_on_get_is_retried(simulator: Simulator) -> None:
    simulator.faults.add("list_scans", FaultKind.DELAY, delay_s=2.0)
    async with client_for(simulator, timeout_s=0.3) as client:
        listing = await client.list_scans()

    assert listing.complete
    assert client.stats.requests[("list_scans", "timeout")] == 1


async def test_put_plan_is_retried_after_a_drop(simulator: Simulator) -> None:
    simulator.faults.add("update_plan", FaultKind.DROP_AFTER)
    async with client_for(simulator) as client:
        stored = await client.update_plan({})

    assert stored == {}
    assert simulator.stats.count("update_plan") == 2


@pytest.mark.parametrize(
    "kind",
    [FaultKind.DROP_AFTER, FaultKind.DROP_BEFORE, FaultKind.SERVER_ERROR, FaultKind.DELAY],
)
async def test_create_scan_after_ambiguous_failure_makes_one_scan(
    simulator: Simulator, kind: FaultKind
) -> None:
    simulator.faults.add("create_scan", kind, delay_s=2.0)
    async with client_for(simulator, timeout_s=0.5) as client:
        scan = await client.create_scan()

    assert [created.id for created in simulator.state.scans] == [scan.id]


async def test_create_scan_drop_after_adopts_without_posting_again(simulator: Simulator) -> None:
    simulator.faults.add("create_scan", FaultKind.DROP_AFTER)
    async with client_for(simulator) as client:
        scan = await client.create_scan()

    assert scan.id == simulator.state.scans[0].id
    assert simulator.stats.count("create_scan") == 1
    assert simulator.stats.count("list_scans") == 1


async def test_create_scan_ignores_known_scans(simulator: Simulator) -> None:
    earlier = simulator.state.create_scan()
    simulator.faults.add("create_scan", FaultKind.DROP_BEFORE)
    async with client_for(simulator) as client:
        scan = await client.create_scan(known_scan_ids={earlier.id})

    assert scan.id != earlier.id
    assert len(simulator.state.scans) == 2


async def test_create_scan_unreadable_body_adopts_the_scan(simulator: Simulator) -> None:
    simulator.faults.add("create_scan", FaultKind.MALFORMED_BODY)
    async with client_for(simulator) as client:
        scan = await client.create_scan()

    assert [created.id for created in simulator.state.scans] == [scan.id]


async def test_create_scan_accepts_a_bare_scan(simulator: Simulator) -> None:
    simulator.faults.add("create_scan", FaultKind.BARE_SCAN)
    async with client_for(simulator) as client:
        scan = await client.create_scan()

    assert scan.id == simulator.state.scans[0].id


async def test_create_suppression_drop_is_not_repeated(simulator: Simulator) -> None:
    rule = simulator.scenario.rules[0]
    urn = simulator.scenario.resources[0].urn
    simulator.faults.add("create_suppression", FaultKind.DROP_AFTER)
    async with client_for(simulator) as client:
        with pytest.raises(ApiConnectionError) as raised:
            await client.create_suppression(rule.uuid, [urn])

    assert raised.value.outcome_unknown
    assert "may have applied it" in str(raised.value)
    assert simulator.stats.count("create_suppression") == 1
    assert len(simulator.state.suppressions) == 1


async def test_create_false_positive_server_error_is_not_repeated(simulator: Simulator) -> None:
    simulator.faults.add("create_rule", FaultKind.SERVER_ERROR)
    async with client_for(simulator) as client:
        with pytest.raises(ServerError) as raised:
            await client.create_false_positive(simulator.scenario.resources[0].urn)

    assert raised.value.outcome_unknown
    assert simulator.stats.count("create_rule") == 1


async def test_delete_suppression_drop_after_delete_succeeds(simulator: Simulator) -> None:
    rule = simulator.scenario.rules[0]
    [record] = simulator.state.add_suppressions(rule, [simulator.scenario.resources[0].urn])
    simulator.faults.add("delete_suppression", FaultKind.DROP_AFTER)
    async with client_for(simulator) as client:
        await client.delete_suppression(record.id)

    assert simulator.state.suppressions == {}
    assert simulator.stats.count("delete_suppression", 404) == 1


async def test_lower_case_enums_are_parsed(simulator: Simulator) -> None:
    async with client_for(simulator) as client:
        scan = await client.create_scan()
        for _ in range(20):
            if (await client.get_scan(scan.id, per_page=1)).status.is_terminal:
                break
        simulator.faults.add("get_scan", FaultKind.LOWERCASE_ENUMS)

        polled = await client.get_scan(scan.id)

    assert polled.status_text == "completed"
    assert polled.status is ScanStatus.COMPLETED
    assert all(isinstance(finding.severity, Severity) for finding in polled.findings)


@pytest.mark.parametrize("kind", INVALID_BODY_FAULTS)
@pytest.mark.parametrize(
    "route", ["list_scans", "get_settings", "latest_scan", "affected_resources"]
)
async def test_invalid_body_is_invalid_response_error(
    simulator: Simulator, kind: FaultKind, route: str
) -> None:
    async with client_for(simulator) as client:
        scan = await client.create_scan()
        for _ in range(20):
            if (await client.get_scan(scan.id, per_page=1)).status.is_terminal:
                break
        rule = simulator.state.scans[0].findings[0].rule
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "list_scans": client.list_scans,
            "get_settings": client.get_settings,
            "latest_scan": client.collect_latest_findings,
            "affected_resources": lambda: client.collect_affected_resources(scan.id, rule.uuid),
        }
        simulator.faults.add(route, kind)

        with pytest.raises(InvalidResponseError) as raised:
            await calls[route]()

    assert raised.value.status == 200
    assert raised.value.operation in str(raised.value)
    assert client.stats.retries == 0
