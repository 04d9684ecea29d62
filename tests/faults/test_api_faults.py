"""The DigitalOcean API responding to a fifth of its requests with a random fault: 429s, 5xx,
delays and dropped connections. Every cycle must still complete, and after each cycle the
finding states must be those of an undisturbed run, so no fault makes a finding resolve."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import load_settings
from service.runtime import run_once
from service.simulator import FaultKind
from tests.faults.reference import outcome_of, undisturbed_run
from tests.faults.webhook_sink import WebhookSink
from tests.faults.world import Receivers, read_end_state, service_environment, write_config
from tests.scanning.support import LIFECYCLE_SCANS, scenario
from tests.support.simulators import SimulatorFactory
from tests.support.slack_server import SlackServer

pytestmark = pytest.mark.slow

FAULT_RATE = 0.2
TRANSIENT_FAULTS = (
    FaultKind.RATE_LIMITED,
    FaultKind.RATE_LIMITED_RESET_PAST,
    FaultKind.RATE_LIMITED_RESET_FUTURE,
    FaultKind.SERVER_ERROR,
    FaultKind.BAD_GATEWAY,
    FaultKind.SERVICE_UNAVAILABLE,
    FaultKind.DELAY,
    FaultKind.DROP_BEFORE,
    FaultKind.DROP_AFTER,
)
# Four scans: a baseline, then new and escalated findings, one resolved, one reopened.
CYCLES = 4


@pytest.mark.parametrize("seed", [7, 2026])
async def test_cycles_complete_under_random_api_faults(
    seed: int,
    tmp_path: Path,
    make_simulator: SimulatorFactory,
    slack_server: SlackServer,
    webhook_sink: WebhookSink,
    receivers: Receivers,
    sqlite_url: str,
) -> None:
    team = scenario(LIFECYCLE_SCANS)
    expected, expected_states = await undisturbed_run(tmp_path / "reference", team, CYCLES)
    simulator = await make_simulator(team, validate=False)
    simulator.faults.add_random(FAULT_RATE, TRANSIENT_FAULTS, seed)
    config = write_config(
        tmp_path, api_url=simulator.url, database_url=sqlite_url, receivers=receivers
    )
    settings = load_settings(config, service_environment(simulator.token))

    states_by_cycle = []
    exit_codes = []
    for _ in range(CYCLES):
        exit_codes.append(await run_once(settings))
        states_by_cycle.append((await read_end_state(sqlite_url)).states)
    end = await read_end_state(sqlite_url)
    outcome = outcome_of(end.states, slack_server.state, webhook_sink.state)

    assert len(simulator.faults.applied) > 0
    assert exit_codes == [0] * CYCLES
    assert len(simulator.state.scans) == CYCLES
    assert [scan.status for scan in end.scans] == ["COMPLETED"] * CYCLES
    assert all(scan.collection_complete for scan in end.scans)
    for cycle, (states, expected_after) in enumerate(
        zip(states_by_cycle, expected_states, strict=True)
    ):
        assert states == expected_after, f"finding states differ after cycle {cycle + 1}"
    assert set(end.deliveries_by_status()) == {"sent"}
    assert outcome.webhook_alerts == expected.webhook_alerts
    assert outcome.slack_messages == expected.slack_messages
