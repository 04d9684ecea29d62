"""Suppressions, false positives and the plan: what they return and how they change scans."""

from __future__ import annotations

import uuid
from typing import Any

from service.simulator import Simulator
from tests.simulator.calls import SCANS, SETTINGS, ApiCaller, api_caller

SUPPRESSIONS = f"{SETTINGS}/suppressions"
BACKUPS_RULE = "67c7445f-bbd9-412f-bf88-84ce757533e0"
WEB_2 = "do:droplet:412398742"
WEB_3 = "do:droplet:412398743"
CI_RUNNER = "do:droplet:413118804"


async def scan_findings(api: ApiCaller) -> dict[str, dict[str, Any]]:
    created = await api.create_scan()
    scan = await api.finish_scan(created["id"])
    return {finding["rule_uuid"]: finding for finding in scan["findings"]}


async def affected_urns(api: ApiCaller, scan_id: str, rule_uuid: str) -> list[str]:
    path = f"{SCANS}/{scan_id}/findings/{rule_uuid}/affected_resources"
    reply = await api.get(path, params={"per_page": "200"})
    return [resource["urn"] for resource in reply.json["affected_resources"]]


async def test_create_suppression_returns_created_records(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        reply = await api.post(
            SUPPRESSIONS, json={"rule_uuid": BACKUPS_RULE, "resources": [WEB_2, WEB_3]}
        )

    assert reply.status == 201
    records = reply.json["resources"]
    assert [record["resource_id"] for record in records] == ["412398742", "412398743"]
    assert {record["resource_type"] for record in records} == {"Droplet"}
    assert {record["rule_name"] for record in records} == {"Droplet Backups Not Enabled"}
    assert all(uuid.UUID(record["id"]) for record in records)
    assert reply.json["meta"] == {"page": 1, "pages": 1, "total": 2}


async def test_create_suppression_twice_keeps_one_record(simulator: Simulator) -> None:
    body = {"rule_uuid": BACKUPS_RULE, "resources": [WEB_2]}
    async with api_caller(simulator) as api:
        first = await api.post(SUPPRESSIONS, json=body)
        second = await api.post(SUPPRESSIONS, json=body)
        settings = await api.get(SETTINGS)

    assert first.json["resources"][0]["id"] == second.json["resources"][0]["id"]
    assert settings.json["settings"]["suppressions"]["meta"]["total"] == 1


async def test_suppression_removes_resource_from_later_scans(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        before = await scan_findings(api)
        await api.post(SUPPRESSIONS, json={"rule_uuid": BACKUPS_RULE, "resources": [WEB_2]})
        after = await scan_findings(api)
        latest_id = simulator.state.scans[-1].id
        urns = await affected_urns(api, latest_id, BACKUPS_RULE)

    assert before[BACKUPS_RULE]["affected_resources_count"] == 6
    assert after[BACKUPS_RULE]["affected_resources_count"] == 5
    assert WEB_2 not in urns


async def test_suppression_does_not_change_existing_scan(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        await scan_findings(api)
        scan_id = simulator.state.scans[-1].id
        await api.post(SUPPRESSIONS, json={"rule_uuid": BACKUPS_RULE, "resources": [WEB_2]})
        urns = await affected_urns(api, scan_id, BACKUPS_RULE)

    assert WEB_2 in urns


async def test_deleted_suppression_lets_finding_return(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        created = await api.post(
            SUPPRESSIONS, json={"rule_uuid": BACKUPS_RULE, "resources": [WEB_2]}
        )
        suppressed = await scan_findings(api)
        suppression_id = created.json["resources"][0]["id"]
        deleted = await api(method="DELETE", path=f"{SUPPRESSIONS}/{suppression_id}")
        again = await api(method="DELETE", path=f"{SUPPRESSIONS}/{suppression_id}")
        restored = await scan_findings(api)

    assert deleted.status == 204
    assert deleted.text == ""
    assert again.status == 404
    assert suppressed[BACKUPS_RULE]["affected_resources_count"] == 5
    assert restored[BACKUPS_RULE]["affected_resources_count"] == 6


async def test_suppressing_every_resource_hides_finding(simulator: Simulator) -> None:
    rule = "bc261344-bb0f-4090-9a41-abce4de93b00"
    members = [
        "do:user:93f02856-1f31-4b57-8427-d5bbc8e3ac82",
        "do:user:4d789561-6285-4fef-9d6c-7d46b03f9ce9",
    ]
    async with api_caller(simulator) as api:
        await api.post(SUPPRESSIONS, json={"rule_uuid": rule, "resources": members})
        findings = await scan_findings(api)

    assert rule not in findings


async def test_create_suppression_rejects_invalid_bodies(simulator: Simulator) -> None:
    cases = [
        ({"resources": [WEB_2]}, 400),
        ({"rule_uuid": BACKUPS_RULE}, 400),
        ({"rule_uuid": BACKUPS_RULE, "resources": []}, 400),
        ({"rule_uuid": BACKUPS_RULE, "resources": ["web-2"]}, 400),
        ({"rule_uuid": str(uuid.uuid4()), "resources": [WEB_2]}, 404),
    ]
    async with api_caller(simulator) as api:
        statuses = [(await api.post(SUPPRESSIONS, json=body)).status for body, _ in cases]

    assert statuses == [status for _, status in cases]
    assert simulator.state.suppressions == {}


async def test_settings_pages_suppressions(simulator: Simulator) -> None:
    urns = [f"do:droplet:{number}" for number in range(1, 46)]
    async with api_caller(simulator) as api:
        await api.post(SUPPRESSIONS, json={"rule_uuid": BACKUPS_RULE, "resources": urns})
        first = await api.get(SETTINGS, params={"per_page": "20"})
        last = await api.get(SETTINGS, params={"per_page": "20", "page": "3"})

    first_page = first.json["settings"]["suppressions"]
    last_page = last.json["settings"]["suppressions"]
    assert len(first_page["resources"]) == 20
    assert first_page["meta"] == {"page": 1, "pages": 3, "total": 45}
    assert set(first_page["links"]["pages"]) == {"next", "last"}
    assert len(last_page["resources"]) == 5
    assert set(last_page["links"]["pages"]) == {"first", "prev"}


async def test_false_positive_excludes_resource_from_later_scans(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        before = await scan_findings(api)
        reply = await api.post(f"{SCANS}/rules", json={"resource": CI_RUNNER})
        after = await scan_findings(api)

    assert reply.status == 201
    assert reply.text == ""
    assert before[BACKUPS_RULE]["affected_resources_count"] == 6
    assert after[BACKUPS_RULE]["affected_resources_count"] == 5
    monitoring_rule = "64ed1c38-9d8d-4cec-9295-0b6f50b8fd73"
    assert after[monitoring_rule]["affected_resources_count"] == 2


async def test_false_positive_rejects_invalid_bodies(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        missing = await api.post(f"{SCANS}/rules", json={})
        malformed = await api.post(f"{SCANS}/rules", json={"resource": "droplet 1"})
        empty = await api.post(f"{SCANS}/rules")

    assert [missing.status, malformed.status, empty.status] == [400, 400, 400]
    assert simulator.state.false_positive_urns == {}


async def test_plan_update_round_trips_through_settings(simulator: Simulator) -> None:
    coverage = {"basic": {"resources": [WEB_2], "tags": ["production", "pci"]}}
    async with api_caller(simulator) as api:
        updated = await api(method="PUT", path=f"{SETTINGS}/plan", json={"tier_coverage": coverage})
        settings = await api.get(SETTINGS)

    assert updated.status == 200
    assert updated.json == {"tier_coverage": coverage}
    assert settings.json["tier_coverage"] == coverage


async def test_plan_update_rejects_invalid_bodies(simulator: Simulator) -> None:
    bodies = [
        {},
        {"tier_coverage": []},
        {"tier_coverage": {"basic": {"resources": ["not-a-urn"]}}},
        {"tier_coverage": {"basic": {"tags": "production"}}},
        {"tier_coverage": {"basic": {"regions": ["ams3"]}}},
    ]
    async with api_caller(simulator) as api:
        statuses = [
            (await api(method="PUT", path=f"{SETTINGS}/plan", json=body)).status for body in bodies
        ]
        settings = await api.get(SETTINGS)

    assert statuses == [400] * len(bodies)
    assert settings.json["tier_coverage"] == {"basic": {"resources": [], "tags": ["production"]}}
