"""A page of findings or affected resources that is missing, cut off or short.

The scan must be stored as incomplete, change no finding state (nothing resolves) and raise no
alert. The next cycle, with the API healthy again, must then do what an undisturbed run does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from service.config import load_settings
from service.runtime import EXIT_CYCLE_FAILED, run_once
from service.simulator import Scenario
from tests.faults.api_gate import ApiGate, findings_page_request
from tests.faults.reference import outcome_of, undisturbed_run
from tests.faults.webhook_sink import WebhookSink
from tests.faults.world import Receivers, read_end_state, service_environment, write_config
from tests.scanning.support import RULE_FIREWALL, scenario
from tests.support.simulators import SimulatorFactory
from tests.support.slack_server import SlackServer

# The second scan resolves a firewall finding, escalates the backups finding and adds a
# CRITICAL bucket finding: each would change states and alert if the scan were trusted.
TWO_SCANS = """
- label: baseline
  findings: {firewall: ["do:droplet:1001", "do:droplet:1002"], backups: ["do:droplet:1002"]}
- label: changed
  severity: {backups: HIGH}
  findings:
    firewall: ["do:droplet:1001"]
    backups: ["do:droplet:1002"]
    bucket: ["do:space:uploads"]
"""

NOT_FOUND_BODY = json.dumps(
    {"id": "not_found", "message": "The resource you requested could not be found."}
).encode()


def second_findings_page(request: web.Request) -> bool:
    return findings_page_request(request) and request.query.get("page") == "2"


def first_findings_page(request: web.Request) -> bool:
    return findings_page_request(request) and request.query.get("page", "1") == "1"


def firewall_resources(request: web.Request) -> bool:
    return request.match_info.get("finding_uuid") == RULE_FIREWALL


def link_to_second_page(body: Any, request: web.Request) -> None:
    next_url = str(request.url.update_query(page="2"))
    body["links"] = {"pages": {"next": next_url}}


def drop_last_resource(body: Any, _request: web.Request) -> None:
    body["affected_resources"] = body["affected_resources"][:-1]


def running_without_findings(body: Any, _request: web.Request) -> None:
    body["scan"]["status"] = "IN_PROGRESS"
    body["scan"]["findings"] = []


def findings_page_of_running_scan(gate: ApiGate) -> None:
    # The poll saw the scan COMPLETED; its findings page then describes it as running and
    # empty, as a scan that is being run again would look.
    gate.rewrite("get_scan", running_without_findings, matches=findings_page_request)


def findings_page_missing(gate: ApiGate) -> None:
    gate.rewrite("get_scan", link_to_second_page, matches=first_findings_page)
    gate.replace("get_scan", NOT_FOUND_BODY, matches=second_findings_page, status=404)


def findings_page_truncated(gate: ApiGate) -> None:
    gate.replace("get_scan", b'{"scan": {"id": "', matches=findings_page_request)


def resources_page_truncated(gate: ApiGate) -> None:
    gate.replace(
        "affected_resources", b'{"affected_resources": [{"urn": "do:dr', matches=firewall_resources
    )


def resources_page_short(gate: ApiGate) -> None:
    gate.rewrite("affected_resources", drop_last_resource, matches=firewall_resources)


BREAKAGES: dict[str, Callable[[ApiGate], None]] = {
    "findings_page_missing": findings_page_missing,
    "findings_page_truncated": findings_page_truncated,
    "findings_page_of_running_scan": findings_page_of_running_scan,
    "resources_page_truncated": resources_page_truncated,
    "resources_page_short": resources_page_short,
}


def two_scans() -> Scenario:
    return scenario(TWO_SCANS)


@pytest.mark.parametrize("breakage", list(BREAKAGES))
async def test_broken_page_stores_incomplete_scan_that_changes_nothing(
    breakage: str,
    tmp_path: Path,
    make_simulator: SimulatorFactory,
    gate: ApiGate,
    slack_server: SlackServer,
    webhook_sink: WebhookSink,
    receivers: Receivers,
    sqlite_url: str,
) -> None:
    expected, expected_states = await undisturbed_run(tmp_path / "reference", two_scans(), 2)
    simulator = await make_simulator(two_scans(), validate=False, middlewares=[gate.middleware])
    config = write_config(
        tmp_path, api_url=simulator.url, database_url=sqlite_url, receivers=receivers
    )
    settings = load_settings(config, service_environment(simulator.token))

    assert await run_once(settings) == 0
    before = await read_end_state(sqlite_url)
    BREAKAGES[breakage](gate)
    broken_exit_code = await run_once(settings)
    broken = await read_end_state(sqlite_url)
    gate.clear()
    assert await run_once(settings) == 0
    end = await read_end_state(sqlite_url)

    assert broken_exit_code == EXIT_CYCLE_FAILED
    incomplete = broken.scans[1]
    assert incomplete.status == "COMPLETED"
    assert incomplete.collection_complete is False
    assert incomplete.states_updated is False
    assert incomplete.problems
    assert broken.states == before.states == expected_states[0]
    assert broken.deliveries == before.deliveries

    # The next scan is trusted again: it resolves, escalates and alerts what the broken one
    # would have.
    assert end.states == expected_states[1]
    outcome = outcome_of(end.states, slack_server.state, webhook_sink.state)
    assert outcome.webhook_alerts == expected.webhook_alerts
    assert outcome.slack_messages == expected.slack_messages
    assert set(end.deliveries_by_status()) == {"sent"}
