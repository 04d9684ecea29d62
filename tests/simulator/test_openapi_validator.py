"""The OpenAPI validator that the simulator fixtures install catches what it must."""

from __future__ import annotations

import json

from aiohttp import web
from aiohttp.typedefs import Handler

from service.simulator import FaultKind, Simulator
from tests.simulator.calls import SCANS, api_caller
from tests.support.openapi import OpenApiValidator
from tests.support.simulators import SimulatorFactory


@web.middleware
async def lowercase_status_unmarked(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Break list-scans responses the way a buggy server would, without a fault mark."""
    response = await handler(request)
    if request.path != SCANS or request.method != "GET" or not isinstance(response, web.Response):
        return response
    assert isinstance(response.body, bytes)
    payload = json.loads(response.body)
    for scan in payload["scans"]:
        scan["status"] = scan["status"].lower()
    broken = web.json_response(payload)
    broken.headers.update(
        {k: v for k, v in response.headers.items() if k.lower() != "content-type"}
    )
    broken.headers.popall("Content-Length", None)
    return broken


@web.middleware
async def accept_bad_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Return 200 for a request that the OpenAPI file rejects, as a buggy server would."""
    response = await handler(request)
    if request.query.get("per_page") == "999":
        ok = web.json_response({"scans": [], "meta": {"total": 0}})
        ok.headers.update(
            {k: v for k, v in response.headers.items() if k.lower().startswith(("x-", "ratelimit"))}
        )
        return ok
    return response


async def test_validator_checks_every_exchange(
    simulator: Simulator, openapi_validator: OpenApiValidator
) -> None:
    async with api_caller(simulator) as api:
        await api.get(SCANS)
        await api.get(SCANS, token="not-accepted")

    assert openapi_validator.checked == 2
    assert openapi_validator.failures == []


async def test_validator_reports_response_outside_spec(
    make_simulator: SimulatorFactory, openapi_validator: OpenApiValidator
) -> None:
    simulator = await make_simulator(middlewares=[lowercase_status_unmarked])
    simulator.state.create_scan()
    async with api_caller(simulator) as api:
        await api.get(SCANS)

    problems = [str(failure) for failure in openapi_validator.failures]
    openapi_validator.failures.clear()
    assert len(problems) == 1
    assert "'in_progress' is not one of" in problems[0]


async def test_validator_reports_accepted_invalid_request(
    make_simulator: SimulatorFactory, openapi_validator: OpenApiValidator
) -> None:
    simulator = await make_simulator(middlewares=[accept_bad_requests])
    async with api_caller(simulator) as api:
        reply = await api.get(SCANS, params={"per_page": "999"})

    problems = [str(failure) for failure in openapi_validator.failures]
    openapi_validator.failures.clear()
    assert reply.status == 200
    assert len(problems) == 1
    assert "request is invalid" in problems[0]


async def test_validator_skips_fault_responses(
    simulator: Simulator, openapi_validator: OpenApiValidator
) -> None:
    simulator.faults.add("list_scans", FaultKind.LOWERCASE_ENUMS)
    simulator.state.create_scan()
    async with api_caller(simulator) as api:
        reply = await api.get(SCANS)

    assert reply.json["scans"][0]["status"] == "in_progress"
    assert openapi_validator.skipped == 1
    assert openapi_validator.failures == []
