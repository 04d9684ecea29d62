"""Hostile and malformed API responses: every documented field of the scan and resource
responses with a wrong value, generated bodies (hypothesis), and hand-written ones.

Each case runs one real cycle in this process after a baseline cycle, with the simulator's
responses to one kind of request changed. The cycle must end with a result (no exception), a
rejected body must leave an error that says so, and no finding state or delivery may change:
the scenario repeats its one scan, so a trusted scan changes nothing either.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.config import TargetSettings, load_settings
from service.runtime import Runtime, open_runtime
from service.scanning.cycle import CycleResult, CycleStatus
from tests.faults.api_gate import ApiGate, any_request, findings_page_request, poll_request
from tests.faults.hostile import (
    HUGE_TEXT,
    FieldPath,
    documented_fields,
    hostile_values,
    json_places,
    set_at,
    wrong_values,
)
from tests.faults.world import (
    EndState,
    Receivers,
    one_scan_scenario,
    read_end_state,
    service_environment,
    write_config,
)
from tests.support.simulators import SimulatorFactory

SCAN_PATH = "/v2/security/scans/{scan_id}"
RESOURCES_PATH = "/v2/security/scans/{scan_id}/findings/{finding_uuid}/affected_resources"
# How a reason names a rejected response: a body of the wrong shape, or an unknown scan status,
# which the service reads as "not finished" rather than as an error.
REJECTION_MARKERS = ("documented shape", "not COMPLETED")
# An error message quotes at most a few hundred characters of a bad value, whatever its size.
MAX_REASON_CHARS = 2_000


@dataclass(frozen=True)
class Target:
    """A request of the cycle that a case changes: the simulator's route and a filter."""

    name: str
    route: str
    matches: Callable[[web.Request], bool]
    # Whether a rejected response must end the cycle without completing it. A rejected poll is
    # polled again, and a rejected create is resolved by listing the scans.
    fails_cycle: bool


FINDINGS_PAGE = Target("findings_page", "get_scan", findings_page_request, True)
RESOURCES_PAGE = Target("resources_page", "affected_resources", any_request, True)
POLL = Target("poll", "get_scan", poll_request, False)
CREATE = Target("create", "create_scan", any_request, False)
TARGETS = (FINDINGS_PAGE, RESOURCES_PAGE, POLL, CREATE)


@dataclass
class World:
    runtime: Runtime
    target: TargetSettings
    gate: ApiGate
    database_url: str
    baseline: EndState

    async def cycle_with(
        self, target: Target, change: Callable[[Any, web.Request], None]
    ) -> CycleResult:
        rewrite = self.gate.rewrite(target.route, change, matches=target.matches)
        try:
            return await self.runtime.run_target(self.target)
        finally:
            self.gate.rewrites.remove(rewrite)

    async def cycle_replacing(self, target: Target, body: bytes) -> CycleResult:
        replacement = self.gate.replace(target.route, body, matches=target.matches)
        try:
            return await self.runtime.run_target(self.target)
        finally:
            self.gate.replacements.remove(replacement)

    async def problems_after(self, result: CycleResult) -> list[str]:
        """What the cycle changed or failed to report, as sentences; empty when all is well."""
        end = await read_end_state(self.database_url)
        problems = []
        if end.states != self.baseline.states:
            problems.append("finding states changed")
        if len(end.deliveries) != len(self.baseline.deliveries):
            problems.append(f"{len(end.deliveries) - len(self.baseline.deliveries)} deliveries")
        if result.status is not CycleStatus.COMPLETED and not result.reason:
            problems.append(f"cycle ended {result.status.value} without a reason")
        if len(result.reason) > MAX_REASON_CHARS:
            problems.append(f"the reason has {len(result.reason)} characters")
        for scan in end.scans:
            stored_text = len(scan.error or "") + sum(len(problem) for problem in scan.problems)
            if stored_text > MAX_REASON_CHARS * 4:
                problems.append(f"scan {scan.scan_id} stores {stored_text} characters of errors")
        return problems


@pytest.fixture
async def world(
    tmp_path: Path,
    make_simulator: SimulatorFactory,
    gate: ApiGate,
    receivers: Receivers,
    sqlite_url: str,
) -> AsyncIterator[World]:
    simulator = await make_simulator(
        one_scan_scenario(in_progress_polls=1), validate=False, middlewares=[gate.middleware]
    )
    config = write_config(
        tmp_path,
        api_url=simulator.url,
        database_url=sqlite_url,
        receivers=receivers,
        poll="{initial_interval_s: 0.1, max_interval_s: 0.2, timeout_s: 0.5}",
    )
    loaded = load_settings(config, service_environment(simulator.token))
    async with open_runtime(loaded, migrate=False) as runtime:
        (target,) = loaded.targets
        baseline = await runtime.run_target(target)
        assert baseline.status is CycleStatus.COMPLETED, baseline.reason
        await runtime.dispatch()
        yield World(runtime, target, gate, sqlite_url, await read_end_state(sqlite_url))


@dataclass
class FieldChange:
    """Sets one field, in every element of the arrays on its path, and counts the places."""

    path: FieldPath
    value: Any
    replaced: int = 0

    def __call__(self, body: Any, _request: web.Request) -> None:
        self.replaced += set_at(body, self.path, self.value)


def _fields_of(target: Target) -> list[Any]:
    path = SCAN_PATH if target is FINDINGS_PAGE else RESOURCES_PATH
    return documented_fields(path, "get", "200")


@pytest.mark.parametrize("target", [FINDINGS_PAGE, RESOURCES_PAGE], ids=lambda t: t.name)
async def test_every_documented_field_with_wrong_value_rejected(
    world: World, target: Target
) -> None:
    failures = []
    for field in _fields_of(target):
        for label, value in wrong_values(field):
            change = FieldChange(field.path, value)
            result = await world.cycle_with(target, change)
            case = f"{field.label} = {label}"
            if change.replaced == 0:
                failures.append(f"{case}: no such field in the simulator's response")
                continue
            if result.status is CycleStatus.COMPLETED:
                failures.append(f"{case}: the cycle completed")
            elif not any(marker in result.reason for marker in REJECTION_MARKERS):
                failures.append(f"{case}: reason does not name the invalid response")
            failures.extend(f"{case}: {problem}" for problem in await world.problems_after(result))
    assert failures == []


HOSTILE_BODIES: dict[str, bytes] = {
    "empty": b"",
    "html": b"<html><body><h1>502 Bad Gateway</h1></body></html>",
    "truncated": b'{"scan": {"id": "',
    "null": b"null",
    "array": b"[]",
    "string": b'"scan"',
    "scan_null": b'{"scan": null}',
    "scan_array": b'{"scan": []}',
    "findings_object": b'{"scan": {"id": "x", "status": "COMPLETED", "findings": {}}}',
    "deeply_nested": b"[" * 100_000 + b"]" * 100_000,
    "huge_string": json.dumps({"scan": {"id": HUGE_TEXT}}).encode(),
    "huge_count": (
        b'{"scan": {"id": "x", "status": "COMPLETED", "findings": [{"rule_uuid": "r",'
        b' "severity": "HIGH", "affected_resources_count": 1' + b"0" * 400 + b"}]}}"
    ),
    "non_finite": b'{"affected_resources": [{"urn": NaN}], "meta": {"total": Infinity}}',
    "not_utf8": b'{"scan": {"id": "\xff\xfe"}}',
}


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
async def test_hand_written_hostile_bodies_never_crash(world: World, target: Target) -> None:
    failures = []
    for name, body in HOSTILE_BODIES.items():
        result = await world.cycle_replacing(target, body)
        if target.fails_cycle and result.status is CycleStatus.COMPLETED:
            failures.append(f"{name}: the cycle completed")
        failures.extend(f"{name}: {problem}" for problem in await world.problems_after(result))
    assert failures == []


# The client paces itself at 250 requests a minute per token. A cycle here makes at most seven
# (a rejected poll is repeated about four times before the 0.5 s poll timeout), so 30 examples
# stay under that and the test never waits for the rate limit.
@settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    target=st.sampled_from(TARGETS),
    place=st.integers(min_value=0, max_value=10_000),
    value=hostile_values(),
)
async def test_generated_hostile_values_never_crash(
    world: World, target: Target, place: int, value: Any
) -> None:
    def change(body: Any, _request: web.Request) -> None:
        places = json_places(body)
        chosen = places[place % len(places)]
        if chosen:
            set_at(body, chosen, value)
        elif isinstance(body, dict):
            # The root itself: an empty object stands for a body with nothing in it.
            body.clear()

    result = await world.cycle_with(target, change)

    assert await world.problems_after(result) == []


@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(target=st.sampled_from(TARGETS), body=st.binary(max_size=64))
async def test_generated_bytes_never_crash(world: World, target: Target, body: bytes) -> None:
    result = await world.cycle_replacing(target, body)

    assert await world.problems_after(result) == []
