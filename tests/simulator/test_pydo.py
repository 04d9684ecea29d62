"""DigitalOcean's official Python client (pydo) runs its ten security operations against the
simulator; the fixture validates pydo's requests and the responses against the OpenAPI file."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pydo

from service.simulator import Simulator
from tests.support.openapi import OpenApiValidator

BACKUPS_RULE = "67c7445f-bbd9-412f-bf88-84ce757533e0"
WEB_2 = "do:droplet:412398742"


def client_for(simulator: Simulator) -> pydo.Client:
    return pydo.Client(token=simulator.token, endpoint=simulator.url)


async def call(operation: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run one synchronous pydo call on a thread; pydo refuses plain http without the flag."""
    return await asyncio.to_thread(operation, *args, enforce_https=False, **kwargs)


async def test_pydo_scan_operations(
    simulator: Simulator, openapi_validator: OpenApiValidator
) -> None:
    security = client_for(simulator).security

    not_run = await call(security.get_latest_scan)
    created = await call(security.create_scan)
    scan_id = created["scan"]["id"]
    running = await call(security.get_scan, scan_id)
    completed = await call(security.get_scan, scan_id, per_page=200)
    latest = await call(security.get_latest_scan, severity="MEDIUM")
    listed = await call(security.list_scans)
    resources = await call(security.list_scan_finding_affected_resources, scan_id, BACKUPS_RULE)

    assert not_run["scan"]["status"] == "SCAN_NOT_RUN"
    assert created["scan"]["status"] == "IN_PROGRESS"
    assert running["scan"]["status"] == "IN_PROGRESS"
    assert completed["scan"]["status"] == "COMPLETED"
    assert len(completed["scan"]["findings"]) == 15
    assert {f["severity"] for f in latest["scan"]["findings"]} == {"MEDIUM"}
    assert listed["meta"]["total"] == 1
    assert [scan["id"] for scan in listed["scans"]] == [scan_id]
    assert len(resources["affected_resources"]) == 6
    assert openapi_validator.checked == 7


async def test_pydo_settings_operations(
    simulator: Simulator, openapi_validator: OpenApiValidator
) -> None:
    security = client_for(simulator).security
    coverage = {"basic": {"resources": [WEB_2], "tags": ["production"]}}

    false_positive = await call(security.create_scan_rule, {"resource": WEB_2})
    created = await call(
        security.create_suppression, {"rule_uuid": BACKUPS_RULE, "resources": [WEB_2]}
    )
    plan = await call(security.update_settings_plan, {"tier_coverage": coverage})
    settings = await call(security.list_settings)
    suppression_id = created["resources"][0]["id"]
    deleted = await call(security.delete_suppression, suppression_id)
    after_delete = await call(security.list_settings, per_page=5)

    assert false_positive is None
    assert WEB_2 in simulator.state.false_positive_urns
    assert created["resources"][0]["rule_uuid"] == BACKUPS_RULE
    assert plan == {"tier_coverage": coverage}
    assert settings["settings"]["suppressions"]["meta"]["total"] == 1
    assert settings["tier_coverage"] == coverage
    assert deleted is None
    assert after_delete["settings"]["suppressions"]["resources"] == []
    assert openapi_validator.checked == 6


async def test_pydo_unknown_scan_returns_error_body(simulator: Simulator) -> None:
    security = client_for(simulator).security

    reply = await call(security.get_scan, "00000000-0000-4000-8000-000000000000")

    assert reply["id"] == "not_found"


def test_pydo_against_threaded_simulator(
    threaded_simulator: Simulator, openapi_validator: OpenApiValidator
) -> None:
    security = client_for(threaded_simulator).security

    created = security.create_scan(enforce_https=False)
    listed = security.list_scans(per_page=1, enforce_https=False)

    assert created["scan"]["status"] == "IN_PROGRESS"
    assert listed["meta"]["total"] == 1
    assert openapi_validator.checked == 2
