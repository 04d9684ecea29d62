"""PostgreSQL stopped in the middle of a daemon's cycle and started again.

The cycle and the dispatch job must fail with one-line errors that name the database, /readyz
must report the database check failing, the next cycle must complete, and every alert must
arrive once. The server is a
throwaway cluster of the test's own, stopped with `pg_ctl stop -m fast`.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from service.runtime import EXIT_SIGTERM
from service.storage import upgrade_database
from tests.faults.api_gate import ApiGate, poll_request
from tests.faults.processes import ServiceProcess, assert_clean_output, start_service
from tests.faults.reference import outcome_of, undisturbed_outcome
from tests.faults.throwaway_postgres import throwaway_postgres
from tests.faults.webhook_sink import WebhookSink
from tests.faults.world import (
    ONE_SCAN_STATES,
    SLACK_TOKEN,
    WEBHOOK_SECRET,
    Receivers,
    one_scan_scenario,
    read_end_state,
    service_environment,
    write_config,
)
from tests.support.simulators import SimulatorFactory
from tests.support.slack_server import SlackServer

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WAIT_S = 60.0


async def readiness(port: int) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/readyz") as response,
    ):
        return response.status, await response.json()


async def wait_for_readiness(port: int, status: int) -> dict[str, Any]:
    """Ask /readyz until it answers `status`; return that body."""
    async with asyncio.timeout(WAIT_S):
        while True:
            answered, body = await readiness(port)
            if answered == status:
                return body
            await asyncio.sleep(0.2)


def cycle_finished(status: str) -> Any:
    return lambda event: event.get("status") == status


async def test_daemon_survives_postgres_outage(
    tmp_path: Path,
    make_simulator: SimulatorFactory,
    gate: ApiGate,
    slack_server: SlackServer,
    webhook_sink: WebhookSink,
    receivers: Receivers,
) -> None:
    scenario = one_scan_scenario(in_progress_polls=3)
    expected = await undisturbed_outcome(tmp_path / "reference", scenario)
    simulator = await make_simulator(scenario, middlewares=[gate.middleware])
    # The second poll of the first scan waits until the database is down.
    second_poll = gate.hold("get_scan", matches=poll_request, nth=2)

    async with throwaway_postgres() as postgres:
        await upgrade_database(postgres.url)
        config = write_config(
            tmp_path,
            api_url=simulator.url,
            database_url=postgres.url,
            receivers=receivers,
            schedule="{interval_s: 1}",
        )
        daemon = await start_service(["run"], config, service_environment(simulator.token))
        try:
            port = int((await daemon.wait_for_event("web_server_started"))["port"])
            async with asyncio.timeout(WAIT_S):
                await second_poll.arrived.wait()

            await postgres.stop()
            second_poll.release()
            failed = await daemon.wait_for_event("cycle_finished", matches=cycle_finished("error"))
            down = await wait_for_readiness(port, 503)
            # The dispatch job runs every second and meets the outage too.
            dispatch_failed = await daemon.wait_for_event(
                "scheduled_job_failed", matches=lambda event: event.get("job_id") == "dispatch"
            )

            await postgres.start()
            completed = await daemon.wait_for_event(
                "cycle_finished", matches=cycle_finished("completed")
            )
            up = await wait_for_readiness(port, 200)
            await wait_for_deliveries(daemon, count=expected_messages(expected))
        finally:
            daemon.send(signal.SIGTERM)
            code = await daemon.finish()
        end = await read_end_state(postgres.url)

    assert code == EXIT_SIGTERM, daemon.stderr
    assert "database error" in failed["reason"]
    assert "database error" in dispatch_failed["error"]
    assert down["checks"]["database"]["ok"] is False
    assert down["checks"]["database"]["detail"]
    assert up["ready"] is True
    assert completed["scan_id"] == simulator.state.scans[0].id
    assert_clean_output(daemon, simulator.token, SLACK_TOKEN, WEBHOOK_SECRET)

    # Each scan the simulator created was triggered by one cycle: the failed cycle's scan was
    # resumed, not created again. The SIGTERM may land between a POST and its log line.
    triggered = [e["scan_id"] for e in daemon.events() if e.get("event") == "scan_triggered"]
    created = [scan.id for scan in simulator.state.scans]
    assert triggered == created[: len(triggered)]
    assert len(created) - len(triggered) <= 1
    assert end.scans[0].scan_id == simulator.state.scans[0].id
    assert end.scans[0].status == "COMPLETED"
    assert end.states == ONE_SCAN_STATES
    assert set(end.deliveries_by_status()) == {"sent"}
    outcome = outcome_of(end.states, slack_server.state, webhook_sink.state)
    assert outcome.webhook_alerts == expected.webhook_alerts
    assert outcome.slack_messages == expected.slack_messages
    assert webhook_sink.state.repeated_ids() == {}


def expected_messages(expected: Any) -> int:
    return int(expected.slack_messages + expected.webhook_messages)


async def wait_for_deliveries(daemon: ServiceProcess, *, count: int) -> None:
    await daemon.wait_for_event("delivery_sent", count=count)
