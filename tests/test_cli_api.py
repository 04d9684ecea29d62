"""The commands that act through the DigitalOcean API, run against the simulator over HTTP.

The simulator serves the built-in scenario from a background thread, and each command runs
through click's CliRunner with a configuration file in tmp_path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.simulator import Simulator, parse_scenario
from tests.support.openapi import OpenApiValidator
from tests.support.simulators import simulator_in_thread
from tests.test_cli_support import CliSetup, logging_restored, write_setup

FIREWALL_RULE_UUID = "6f4d42b2-48de-4754-a3d3-74988d2a8e60"
# Two Droplets have the firewall finding in the built-in scenario's first scans.
FIREWALL_URNS = {"do:droplet:412398790", "do:droplet:413002560"}
OTHER_TOKEN = "dop_v1_" + "0" * 64

NEVER_ENDING_SCENARIO = """
name: never-ending
resources:
  - {urn: "do:droplet:500000101", name: app-1, type: Droplet}
scans:
  - outcome: IN_PROGRESS
"""

FAILING_SCENARIO = """
name: failing
resources:
  - {urn: "do:droplet:500000101", name: app-1, type: Droplet}
scans:
  - {outcome: FAILED, in_progress_polls: 1}
"""


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    with logging_restored():
        yield


@pytest.fixture
def setup(tmp_path: Path, threaded_simulator: Simulator) -> CliSetup:
    return write_setup(tmp_path, threaded_simulator.url, threaded_simulator.token)


def create_completed_scan(setup: CliSetup) -> dict[str, Any]:
    scan: dict[str, Any] = setup.invoke_json("scans", "create", "--wait")
    assert scan["status"] == "COMPLETED"
    return scan


# scans


def test_scans_create_wait_then_list_get_latest(setup: CliSetup) -> None:
    result = setup.invoke("scans", "create", "--wait", "--output", "json")
    assert result.exit_code == 0, result.stderr
    assert "IN_PROGRESS" in result.stderr
    assert "COMPLETED" in result.stderr

    created = setup.invoke_json("scans", "get", _json_id(result.stdout))
    listed = setup.invoke_json("scans", "list")
    latest = setup.invoke_json("scans", "latest")

    assert created["status"] == "COMPLETED"
    assert created["findings_count"] > 0
    assert sum(created["findings_by_severity"].values()) == created["findings_count"]
    assert created["complete"] is True
    assert [scan["id"] for scan in listed] == [created["id"]]
    assert listed[0]["status"] == "COMPLETED"
    assert latest == created


def test_scans_create_without_wait_returns_at_once(setup: CliSetup) -> None:
    created = setup.invoke_json("scans", "create")

    assert created["status"] == "IN_PROGRESS"
    assert created["id"]


def test_scans_list_table_names_every_scan(setup: CliSetup) -> None:
    first = create_completed_scan(setup)
    second = create_completed_scan(setup)

    result = setup.invoke("scans", "list")

    assert result.exit_code == 0
    assert first["id"] in result.stdout
    assert second["id"] in result.stdout


def test_scans_create_wait_failed_scan_exits_1(
    tmp_path: Path, openapi_validator: OpenApiValidator
) -> None:
    scenario = parse_scenario(FAILING_SCENARIO, source="failing")
    with simulator_in_thread(scenario, validator=openapi_validator) as simulator:
        setup = write_setup(tmp_path, simulator.url, simulator.token)
        result = setup.invoke("scans", "create", "--wait", "--output", "json")

    assert result.exit_code == 1
    assert _json_status(result.stdout) == "FAILED"
    openapi_validator.assert_no_failures()


def test_scans_create_wait_timeout_exits_1(
    tmp_path: Path, openapi_validator: OpenApiValidator
) -> None:
    scenario = parse_scenario(NEVER_ENDING_SCENARIO, source="never-ending")
    with simulator_in_thread(scenario, validator=openapi_validator) as simulator:
        setup = write_setup(tmp_path, simulator.url, simulator.token, poll_timeout_s=0.3)
        result = setup.invoke("scans", "create", "--wait")

    assert result.exit_code == 1
    assert "did not finish within poll.timeout_s=0.3 seconds" in result.stderr
    assert "cspm-watch scans get" in result.stderr
    openapi_validator.assert_no_failures()


# findings and resources


def test_findings_from_api_match_scan_counts(setup: CliSetup) -> None:
    scan = create_completed_scan(setup)

    listed = setup.invoke_json("findings", scan["id"])
    latest = setup.invoke_json("findings", "--latest")
    default = setup.invoke_json("findings")

    assert listed["scan_id"] == scan["id"]
    assert listed["source"] == "api"
    assert len(listed["findings"]) == scan["findings_count"]
    assert latest == listed
    assert default == listed
    severities = [finding["severity"] for finding in listed["findings"]]
    assert severities == sorted(severities, key=["CRITICAL", "HIGH", "MEDIUM", "LOW"].index)


def test_findings_severity_filter_keeps_one_severity(setup: CliSetup) -> None:
    scan = create_completed_scan(setup)

    high = setup.invoke_json("findings", scan["id"], "--severity", "high")

    assert len(high["findings"]) == scan["findings_by_severity"]["HIGH"]
    assert {finding["severity"] for finding in high["findings"]} == {"HIGH"}


def test_findings_table_has_doctl_columns(setup: CliSetup) -> None:
    create_completed_scan(setup)

    result = setup.invoke("findings")

    assert result.exit_code == 0
    for header in ("Rule ID", "Name", "Affected Resources", "Found At", "Severity"):
        assert header in result.stdout
    assert FIREWALL_RULE_UUID in result.stdout


def test_findings_scan_id_with_latest_rejected(setup: CliSetup) -> None:
    result = setup.invoke("findings", "some-scan", "--latest")

    assert result.exit_code == 2
    assert "either SCAN_ID or --latest" in result.stderr


def test_resources_from_api_list_affected_resources(setup: CliSetup) -> None:
    scan = create_completed_scan(setup)

    listed = setup.invoke_json("resources", scan["id"], FIREWALL_RULE_UUID)

    assert listed["complete"] is True
    assert {item["urn"] for item in listed["resources"]} == FIREWALL_URNS
    assert {item["type"] for item in listed["resources"]} == {"Droplet"}
    assert all(item["name"] for item in listed["resources"])


# suppressions and false positives


def test_suppressions_create_list_delete_round_trip(setup: CliSetup) -> None:
    urn = sorted(FIREWALL_URNS)[0]

    created = setup.invoke_json("suppressions", "create", FIREWALL_RULE_UUID, urn)
    listed = setup.invoke_json("suppressions", "list")
    deleted = setup.invoke("suppressions", "delete", created[0]["id"])
    after = setup.invoke_json("suppressions", "list")

    assert len(created) == 1
    assert created[0]["rule_uuid"] == FIREWALL_RULE_UUID
    assert created[0]["resource_id"] == urn.split(":", 2)[2]
    assert created[0]["id"] in [item["id"] for item in listed]
    assert deleted.exit_code == 0
    assert created[0]["id"] in deleted.stdout
    assert created[0]["id"] not in [item["id"] for item in after]


def test_suppressions_create_invalid_urn_rejected(setup: CliSetup) -> None:
    result = setup.invoke("suppressions", "create", FIREWALL_RULE_UUID, "droplet-123")

    assert result.exit_code == 2
    assert "'droplet-123' is not a resource URN" in result.stderr


def test_suppressions_delete_unknown_id_exits_1(setup: CliSetup) -> None:
    result = setup.invoke("suppressions", "delete", "00000000-0000-4000-8000-000000000000")

    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "00000000-0000-4000-8000-000000000000" in result.stderr
    assert "HTTP 404" in result.stderr
    assert "check the id with `cspm-watch suppressions list`" in result.stderr
    assert "get_settings" not in result.stderr


def test_suppressions_delete_unknown_id_names_target(
    tmp_path: Path, threaded_simulator: Simulator
) -> None:
    second_target = """\
    - name: staging
      token_env: CSPM_TEST_DO_TOKEN
      schedule: {interval_s: 3600}
    """
    setup = write_setup(
        tmp_path,
        threaded_simulator.url,
        threaded_simulator.token,
        extra_targets_yaml=second_target,
    )

    result = setup.invoke("suppressions", "delete", "no-such-id", "--target", "staging")

    assert result.exit_code == 1
    assert "`cspm-watch suppressions list --target staging`" in result.stderr


def test_false_positive_excludes_resource_from_next_scan(setup: CliSetup) -> None:
    urn = sorted(FIREWALL_URNS)[0]

    marked = setup.invoke("false-positive", urn, "--yes")
    scan = create_completed_scan(setup)
    listed = setup.invoke_json("resources", scan["id"], FIREWALL_RULE_UUID)

    assert marked.exit_code == 0
    assert {item["urn"] for item in listed["resources"]} == FIREWALL_URNS - {urn}


def test_false_positive_declined_sends_nothing(
    setup: CliSetup, threaded_simulator: Simulator
) -> None:
    result = setup.invoke("false-positive", sorted(FIREWALL_URNS)[0], input_text="n\n")

    assert result.exit_code == 1
    assert "Exclude do:droplet:" in result.stdout
    assert threaded_simulator.stats.count("create_rule") == 0


# plan


def test_plan_set_then_show(setup: CliSetup) -> None:
    urn = sorted(FIREWALL_URNS)[0]

    stored = setup.invoke_json(
        "plan", "set", "basic", "--resource", urn, "--tag", "production", "--tag", "web"
    )
    shown = setup.invoke_json("plan", "show")

    expected = {"resources": [urn], "tags": ["production", "web"]}
    assert stored["tier_coverage"]["basic"] == expected
    assert shown["tier_coverage"]["basic"] == expected
    assert "plan_downgrades" in shown


def test_plan_set_empty_coverage_rejected(setup: CliSetup) -> None:
    result = setup.invoke("plan", "set", "basic")

    assert result.exit_code == 2
    assert "--resource or --tag" in result.stderr


# errors


def test_scans_get_unknown_id_prints_one_line(setup: CliSetup) -> None:
    result = setup.invoke("scans", "get", "no-such-scan")

    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert "no-such-scan" in lines[0]


def test_unknown_target_lists_configured_names(setup: CliSetup) -> None:
    result = setup.invoke("scans", "list", "--target", "production")

    assert result.exit_code == 2
    assert "'production' is not configured" in result.stderr
    assert "demo" in result.stderr


def test_several_targets_require_target_option(
    tmp_path: Path, threaded_simulator: Simulator
) -> None:
    second_target = """\
    - name: staging
      token_env: CSPM_TEST_DO_TOKEN
      schedule: {interval_s: 3600}
    """
    setup = write_setup(
        tmp_path,
        threaded_simulator.url,
        threaded_simulator.token,
        extra_targets_yaml=second_target,
    )

    without = setup.invoke("scans", "list")
    chosen = setup.invoke("scans", "list", "--target", "staging", "--output", "json")

    assert without.exit_code == 2
    assert "2 targets are configured (demo, staging)" in without.stderr
    assert "--target NAME" in without.stderr
    assert chosen.exit_code == 0


def test_invalid_token_prints_auth_error(setup: CliSetup) -> None:
    result = setup.invoke("scans", "list", token=OTHER_TOKEN)

    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "HTTP 401" in lines[0]
    assert "check that the token is valid" in lines[0]


def _json_id(text: str) -> str:
    return str(json.loads(text)["id"])


def _json_status(text: str) -> str:
    return str(json.loads(text)["status"])
