"""Bearer tokens and per-token scopes."""

from __future__ import annotations

import pytest

from service.simulator import Simulator
from tests.simulator.calls import SCANS, SETTINGS, api_caller
from tests.support.simulators import SimulatorFactory

READ_ONLY = "read-only-token"
# Each operation with its method, path, JSON body and the scope it needs.
OPERATIONS = [
    ("GET", SCANS, None, "security:read"),
    ("POST", SCANS, None, "security:create"),
    ("GET", f"{SCANS}/latest", None, "security:read"),
    ("POST", f"{SCANS}/rules", {"resource": "do:droplet:1"}, "security:create"),
    ("GET", f"{SCANS}/00000000-0000-4000-8000-000000000000", None, "security:read"),
    ("GET", f"{SETTINGS}", None, "security:read"),
    ("PUT", f"{SETTINGS}/plan", {"tier_coverage": {}}, "security:update"),
    (
        "POST",
        f"{SETTINGS}/suppressions",
        {"rule_uuid": "67c7445f-bbd9-412f-bf88-84ce757533e0", "resources": ["do:droplet:1"]},
        "security:create",
    ),
    (
        "DELETE",
        f"{SETTINGS}/suppressions/00000000-0000-4000-8000-000000000000",
        None,
        "security:delete",
    ),
]


async def test_missing_token_is_unauthorized(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        reply = await api.get(SCANS, headers={"Authorization": ""})

    assert reply.status == 401
    assert reply.json["id"] == "unauthorized"
    assert reply.json["message"] == "Unable to authenticate you."
    assert reply.json["request_id"] == reply.headers["x-request-id"]


@pytest.mark.parametrize(
    "authorization", ["Bearer wrong-token", "Basic dXNlcjpwYXNz", "Bearer", "token-without-scheme"]
)
async def test_wrong_credentials_are_unauthorized(simulator: Simulator, authorization: str) -> None:
    async with api_caller(simulator) as api:
        reply = await api.get(SCANS, headers={"Authorization": authorization})

    assert reply.status == 401
    assert reply.json["id"] == "unauthorized"


async def test_unauthorized_request_changes_nothing(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        reply = await api.post(SCANS, token="wrong-token")

    assert reply.status == 401
    assert simulator.state.scans == []


@pytest.mark.parametrize(("method", "path", "body", "scope"), OPERATIONS)
async def test_missing_scope_is_forbidden(
    make_simulator: SimulatorFactory, method: str, path: str, body: object, scope: str
) -> None:
    others = {"security:read", "security:create", "security:update", "security:delete"} - {scope}
    simulator = await make_simulator(tokens={"scoped": others, "exact": {scope}})
    async with api_caller(simulator) as api:
        forbidden = await api(method=method, path=path, json=body, token="scoped")
        allowed = await api(method=method, path=path, json=body, token="exact")

    assert forbidden.status == 403
    assert forbidden.json["id"] == "forbidden"
    assert allowed.status not in (401, 403)


async def test_add_token_accepts_it(simulator: Simulator) -> None:
    simulator.add_token(READ_ONLY, scopes=["security:read"])
    async with api_caller(simulator) as api:
        read = await api.get(SCANS, token=READ_ONLY)
        create = await api.post(SCANS, token=READ_ONLY)

    assert read.status == 200
    assert create.status == 403


def test_add_token_rejects_unknown_scope(simulator: Simulator) -> None:
    with pytest.raises(ValueError, match="security:admin"):
        simulator.add_token("x", scopes=["security:admin"])
