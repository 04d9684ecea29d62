"""The ten operations of the simulated API against the built-in scenario."""

from __future__ import annotations

import uuid

from service.simulator import Simulator
from tests.simulator.calls import SCANS, SETTINGS, api_caller

DROPLET_BACKUPS_RULE = "67c7445f-bbd9-412f-bf88-84ce757533e0"
SPACES_PUBLIC_WRITE_RULE = "447e14ab-9b61-44a9-9c6a-82c43ef2e8a9"
NO_FIREWALL_RULE = "8a645179-f148-417a-909b-536d7c7ee458"


async def test_latest_scan_before_first_scan(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        reply = await api.get(f"{SCANS}/latest")

    assert reply.status == 200
    assert reply.json == {"scan": {"status": "SCAN_NOT_RUN", "findings": []}}


async def test_create_scan_without_body_returns_in_progress_scan(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        reply = await api.post(SCANS)

    assert reply.status == 201
    scan = reply.json["scan"]
    assert scan["status"] == "IN_PROGRESS"
    assert scan["findings"] == []
    assert uuid.UUID(scan["id"]).version == 4
    assert scan["created_at"].endswith("Z")


async def test_create_scan_accepts_empty_object_body(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        reply = await api.post(SCANS, json={})

    assert reply.status == 201
    assert reply.json["scan"]["status"] == "IN_PROGRESS"


async def test_create_scan_with_resources_limits_findings(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        reply = await api.post(SCANS, json={"resources": ["do:droplet:412398742"]})
        scan = await api.finish_scan(reply.json["scan"]["id"])

    assert reply.status == 201
    assert [finding["rule_uuid"] for finding in scan["findings"]] == [DROPLET_BACKUPS_RULE]
    assert scan["findings"][0]["affected_resources_count"] == 1


async def test_create_scan_rejects_invalid_bodies(simulator: Simulator) -> None:
    bodies = [b"{not json", b"[]", b'{"resources": "do:droplet:1"}', b'{"resources": ["x"]}']
    async with api_caller(simulator) as api:
        replies = [
            await api.post(SCANS, data=body, headers={"Content-Type": "application/json"})
            for body in bodies
        ]

    assert [reply.status for reply in replies] == [400, 400, 400, 400]
    assert {reply.json["id"] for reply in replies} == {"bad_request"}
    assert len(simulator.state.scans) == 0


async def test_get_scan_completes_after_one_poll(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        created = await api.create_scan()
        first = await api.get(f"{SCANS}/{created['id']}")
        second = await api.get(f"{SCANS}/{created['id']}")

    assert first.json["scan"]["status"] == "IN_PROGRESS"
    assert first.json["scan"]["findings"] == []
    assert second.json["scan"]["status"] == "COMPLETED"
    assert len(second.json["scan"]["findings"]) == 15


async def test_get_scan_finding_has_every_documented_field(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        created = await api.create_scan()
        scan = await api.finish_scan(created["id"])

    finding = next(f for f in scan["findings"] if f["rule_uuid"] == DROPLET_BACKUPS_RULE)
    assert finding["name"] == "Droplet Backups Not Enabled"
    assert finding["severity"] == "MEDIUM"
    assert finding["affected_resources_count"] == 6
    assert finding["found_at"] == scan["created_at"]
    for text_field in ("details", "business_impact", "technical_details"):
        assert len(finding[text_field]) > 40
    assert finding["mitigation_steps"][0]["step"] == 1
    assert finding["mitigation_steps"][0]["title"] == "Enable backups"


async def test_get_scan_findings_sorted_by_severity(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        created = await api.create_scan()
        scan = await api.finish_scan(created["id"])

    order = {"CRITICAL": 0, "HIGH": 1, "MEDIUM": 2, "LOW": 3}
    ranks = [order[finding["severity"]] for finding in scan["findings"]]
    assert ranks == sorted(ranks)


async def test_get_scan_unknown_id_is_not_found(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        unknown = await api.get(f"{SCANS}/{uuid.uuid4()}")
        malformed = await api.get(f"{SCANS}/not-a-uuid")

    assert unknown.status == 404
    assert unknown.json["id"] == "not_found"
    assert unknown.json["request_id"] == unknown.headers["x-request-id"]
    assert malformed.status == 404


async def test_latest_scan_returns_most_recent_scan(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        await api.create_scan()
        second = await api.create_scan()
        reply = await api.get(f"{SCANS}/latest")

    assert reply.json["scan"]["id"] == second["id"]


async def test_list_scans_returns_newest_first_without_findings(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        first = await api.create_scan()
        await api.finish_scan(first["id"])
        second = await api.create_scan()
        reply = await api.get(SCANS)

    assert reply.status == 200
    assert [scan["id"] for scan in reply.json["scans"]] == [second["id"], first["id"]]
    assert [scan["status"] for scan in reply.json["scans"]] == ["IN_PROGRESS", "COMPLETED"]
    assert all(scan["findings"] == [] for scan in reply.json["scans"])
    assert reply.json["meta"] == {"total": 2}
    assert "links" not in reply.json


async def test_affected_resources_match_count(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        created = await api.create_scan()
        scan = await api.finish_scan(created["id"])
        counts = {}
        for finding in scan["findings"]:
            path = f"{SCANS}/{scan['id']}/findings/{finding['rule_uuid']}/affected_resources"
            reply = await api.get(path, params={"per_page": "200"})
            counts[finding["rule_uuid"]] = len(reply.json["affected_resources"])

    assert counts == {f["rule_uuid"]: f["affected_resources_count"] for f in scan["findings"]}


async def test_affected_resources_have_urn_name_and_display_type(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        created = await api.create_scan()
        await api.finish_scan(created["id"])
        path = f"{SCANS}/{created['id']}/findings/{DROPLET_BACKUPS_RULE}/affected_resources"
        reply = await api.get(path)

    assert reply.status == 200
    first = reply.json["affected_resources"][0]
    assert first == {"urn": "do:droplet:412398742", "name": "web-prod-02", "type": "Droplet"}
    assert set(reply.json) == {"affected_resources"}


async def test_affected_resources_of_unreported_rule_is_not_found(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        created = await api.create_scan()
        running = f"{SCANS}/{created['id']}/findings/{DROPLET_BACKUPS_RULE}/affected_resources"
        before_completion = await api.get(running)
        await api.finish_scan(created["id"])
        # Scan 1 is the baseline, which has no public-write bucket yet.
        absent = await api.get(
            f"{SCANS}/{created['id']}/findings/{SPACES_PUBLIC_WRITE_RULE}/affected_resources"
        )

    assert before_completion.status == 404
    assert absent.status == 404
    assert absent.json["id"] == "not_found"


async def test_default_scenario_second_scan_adds_critical_and_escalates(
    simulator: Simulator,
) -> None:
    async with api_caller(simulator) as api:
        first = await api.finish_scan((await api.create_scan())["id"])
        second = await api.finish_scan((await api.create_scan())["id"])

    before = {f["rule_uuid"]: f for f in first["findings"]}
    after = {f["rule_uuid"]: f for f in second["findings"]}
    new = [after[rule] for rule in after.keys() - before.keys()]
    assert "CRITICAL" in {finding["severity"] for finding in new}
    assert sum(1 for finding in new if finding["severity"] == "HIGH") >= 2
    assert before[NO_FIREWALL_RULE]["severity"] == "MEDIUM"
    assert after[NO_FIREWALL_RULE]["severity"] == "HIGH"


async def test_default_scenario_third_scan_resolves_findings(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        scans = [await api.finish_scan((await api.create_scan())["id"]) for _ in range(3)]

    second = {f["rule_uuid"]: f for f in scans[1]["findings"]}
    third = {f["rule_uuid"]: f for f in scans[2]["findings"]}
    assert len(second.keys() - third.keys()) >= 3
    assert SPACES_PUBLIC_WRITE_RULE not in third
    assert third[DROPLET_BACKUPS_RULE]["affected_resources_count"] == 2


async def test_found_at_stays_while_finding_remains_open(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        first = await api.finish_scan((await api.create_scan())["id"])
        second = await api.finish_scan((await api.create_scan())["id"])

    first_found = {f["rule_uuid"]: f["found_at"] for f in first["findings"]}
    second_found = {f["rule_uuid"]: f["found_at"] for f in second["findings"]}
    assert second_found[DROPLET_BACKUPS_RULE] == first_found[DROPLET_BACKUPS_RULE]
    assert second_found[SPACES_PUBLIC_WRITE_RULE] == second["created_at"]


async def test_unknown_path_is_json_not_found(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        reply = await api.get("/v2/security/nothing-here")

    assert reply.status == 404
    assert reply.json["id"] == "not_found"


async def test_wrong_method_is_json_method_not_allowed(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        reply = await api.post(f"{SCANS}/latest")

    assert reply.status == 405
    assert reply.json["id"] == "method_not_allowed"


async def test_settings_lists_plan_and_empty_suppressions(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        reply = await api.get(SETTINGS)

    assert reply.status == 200
    assert reply.json["settings"]["suppressions"] == {
        "resources": [],
        "meta": {"page": 1, "pages": 1, "total": 0},
    }
    assert reply.json["tier_coverage"] == {"basic": {"resources": [], "tags": ["production"]}}
    assert reply.json["plan_downgrades"]["basic"]["effective_at"] == "2026-09-01T00:00:00Z"


async def test_every_response_has_request_id_header(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        replies = [await api.get(SCANS), await api.get(SCANS, token="wrong-token")]

    request_ids = [reply.headers["x-request-id"] for reply in replies]
    assert all(uuid.UUID(request_id) for request_id in request_ids)
    assert request_ids[0] != request_ids[1]


async def test_oversized_body_is_json_error(simulator: Simulator) -> None:
    too_large = b'{"resources": [' + b'"do:droplet:1",' * 100_000 + b'"do:droplet:1"]}'
    async with api_caller(simulator) as api:
        reply = await api.post(SCANS, data=too_large, headers={"Content-Type": "application/json"})

    assert reply.status == 413
    assert reply.json["id"] == "request_entity_too_large"
    assert simulator.state.scans == []
