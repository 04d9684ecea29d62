"""`cspm-watch once` killed (SIGKILL) or stopped (SIGTERM) at each step of a cycle, then run
again: one scan per cycle, the finding states of an undisturbed run, every alert delivered.

Each step is made observable from outside the process:

| step | how the test stops the process there |
| --- | --- |
| scan created | the simulator creates the scan and withholds the response |
| polling | the simulator holds the second poll |
| collection | the simulator holds the first affected-resources page |
| stored, not enqueued | a test transaction locks the deliveries table: the cycle's write |
| | transaction has stored the scan and the states and waits to insert its deliveries |
| dispatch | the Slack message is recorded sent; the webhook receiver accepts its message |
| | and holds the response |

Storing and enqueueing are one transaction, so the "stored, not enqueued" case kills the
process inside it, with the scan's details and the finding states written but not committed.
That case needs PostgreSQL's table locks; every case runs on PostgreSQL for that reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from service.runtime import EXIT_SIGTERM
from service.storage import create_engine
from tests.faults.api_gate import ApiGate, poll_request
from tests.faults.processes import ServiceProcess, assert_clean_output, run_to_end, start_service
from tests.faults.reference import outcome_of, undisturbed_outcome
from tests.faults.webhook_sink import WebhookSink
from tests.faults.world import (
    ONE_SCAN_STATES,
    SLACK_TOKEN,
    WEBHOOK_SECRET,
    Receivers,
    expire_leases_and_claims,
    one_scan_scenario,
    read_end_state,
    service_environment,
    write_config,
)
from tests.support.simulators import SimulatorFactory
from tests.support.slack_server import SlackServer

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WAIT_S = 60.0


class Step(enum.Enum):
    SCAN_CREATED = "scan_created"
    POLLING = "polling"
    COLLECTION = "collection"
    STORED_NOT_ENQUEUED = "stored_not_enqueued"
    DISPATCH = "dispatch"


@contextlib.asynccontextmanager
async def deliveries_locked(database_url: str) -> AsyncIterator[None]:
    """Hold a SHARE lock on the deliveries table: reads go on, every write waits."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("LOCK TABLE deliveries IN SHARE MODE"))
            yield
    finally:
        await engine.dispose()


async def wait_for_lock_waiter(database_url: str) -> None:
    """Wait until a connection of the service waits on a lock."""
    name = make_url(database_url).query["application_name"]
    engine = create_engine(database_url, poolclass=NullPool)
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE application_name = :name AND wait_event_type = 'Lock'"
    )
    try:
        async with asyncio.timeout(WAIT_S):
            while True:
                async with engine.connect() as connection:
                    if (await connection.scalar(query, {"name": name})) or 0:
                        return
                await asyncio.sleep(0.05)
    finally:
        await engine.dispose()


class Stopper:
    """Arms one step, waits until the process reaches it, and lets the step go on after."""

    def __init__(self, step: Step, gate: ApiGate, sink: WebhookSink, database_url: str):
        self.step = step
        self.gate = gate
        self.sink = sink
        self.database_url = database_url
        self._stack = contextlib.AsyncExitStack()
        self._reached: asyncio.Event | None = None

    async def arm(self) -> None:
        if self.step is Step.SCAN_CREATED:
            self._reached = self.gate.hold("create_scan", after_handler=True).arrived
        elif self.step is Step.POLLING:
            self._reached = self.gate.hold("get_scan", matches=poll_request, nth=2).arrived
        elif self.step is Step.COLLECTION:
            self._reached = self.gate.hold("affected_resources").arrived
        elif self.step is Step.STORED_NOT_ENQUEUED:
            await self._stack.enter_async_context(deliveries_locked(self.database_url))
        else:
            self.sink.state.hold_next = True
            self._reached = self.sink.state.held

    async def wait_until_reached(self, service: ServiceProcess) -> None:
        if self._reached is None:
            await wait_for_lock_waiter(self.database_url)
            return
        async with asyncio.timeout(WAIT_S):
            await self._reached.wait()
        if self.step is Step.DISPATCH:
            # Slack's channel drains at the same time; its message must be recorded first, so
            # that only the held webhook message is between sending and recording.
            await service.wait_for_event(
                "delivery_sent", matches=lambda event: event.get("notifier") == "security"
            )

    async def let_go(self) -> None:
        self.gate.release_all()
        self.sink.state.released.set()
        await self._stack.aclose()


async def stop_at(
    step: Step,
    signum: signal.Signals,
    *,
    config: Path,
    environment: dict[str, str],
    stopper: Stopper,
) -> ServiceProcess:
    await stopper.arm()
    service = await start_service(["once"], config, environment)
    try:
        await stopper.wait_until_reached(service)
        service.send(signum)
        if signum is signal.SIGTERM and step is Step.DISPATCH:
            # The send in flight finishes before the process exits.
            await stopper.let_go()
        await service.finish()
    finally:
        await service.kill()
        await stopper.let_go()
    return service


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
@pytest.mark.parametrize("step", list(Step), ids=[step.value for step in Step])
async def test_once_stopped_at_step_recovers(
    step: Step,
    signum: signal.Signals,
    tmp_path: Path,
    make_simulator: SimulatorFactory,
    gate: ApiGate,
    slack_server: SlackServer,
    webhook_sink: WebhookSink,
    receivers: Receivers,
    postgres_url: str,
) -> None:
    scenario = one_scan_scenario()
    expected = await undisturbed_outcome(tmp_path / "reference", scenario)
    simulator = await make_simulator(scenario, middlewares=[gate.middleware])
    config = write_config(
        tmp_path, api_url=simulator.url, database_url=postgres_url, receivers=receivers
    )
    environment = service_environment(simulator.token)
    stopper = Stopper(step, gate, webhook_sink, postgres_url)

    stopped = await stop_at(step, signum, config=config, environment=environment, stopper=stopper)
    if signum is signal.SIGKILL:
        await expire_leases_and_claims(postgres_url)
    rerun = await run_to_end(["once"], config, environment)
    end = await read_end_state(postgres_url)
    outcome = outcome_of(end.states, slack_server.state, webhook_sink.state)

    if signum is signal.SIGKILL:
        assert stopped.process.returncode == -signal.SIGKILL
    else:
        assert stopped.process.returncode == EXIT_SIGTERM, stopped.stderr
        assert "shutdown_finished" in stopped.event_names()
        assert_clean_output(stopped, simulator.token, SLACK_TOKEN, WEBHOOK_SECRET)
    assert rerun.process.returncode == 0, rerun.stderr
    assert_clean_output(rerun, simulator.token, SLACK_TOKEN, WEBHOOK_SECRET)

    # The stopped cycle and its rerun make one cycle, with one scan; after a stop in
    # dispatch, the stopped cycle had finished, so the rerun is a second cycle.
    cycles = 2 if step is Step.DISPATCH else 1
    scans_created = len(simulator.state.scans)
    assert scans_created == cycles
    assert [scan.status for scan in end.scans] == ["COMPLETED"] * cycles
    assert all(scan.collection_complete for scan in end.scans)
    assert end.states == ONE_SCAN_STATES
    assert outcome.states == expected.states
    assert set(end.deliveries_by_status()) == {"sent"}
    assert outcome.webhook_alerts == expected.webhook_alerts
    assert outcome.webhook_messages == expected.webhook_messages
    assert outcome.slack_messages == expected.slack_messages

    repeated = webhook_sink.state.repeated_ids()
    if step is Step.DISPATCH and signum is signal.SIGKILL:
        # Killed between sending and recording: the one message in flight arrives once more,
        # under the same webhook-id and with the same body.
        assert list(repeated.values()) == [2]
        (webhook_id,) = repeated
        accepted = webhook_sink.state.accepted
        bodies = [body for arrived_id, body in accepted if arrived_id == webhook_id]
        assert bodies[0] == bodies[1]
    else:
        assert repeated == {}


async def test_once_killed_before_recording_adopts_finished_scan(
    tmp_path: Path,
    make_simulator: SimulatorFactory,
    gate: ApiGate,
    receivers: Receivers,
    webhook_sink: WebhookSink,
    postgres_url: str,
) -> None:
    # The scan completes at once, so it has finished before the restarted process looks.
    scenario = one_scan_scenario(in_progress_polls=0)
    simulator = await make_simulator(scenario, middlewares=[gate.middleware])
    config = write_config(
        tmp_path, api_url=simulator.url, database_url=postgres_url, receivers=receivers
    )
    environment = service_environment(simulator.token)
    stopper = Stopper(Step.SCAN_CREATED, gate, webhook_sink, postgres_url)

    await stop_at(
        Step.SCAN_CREATED, signal.SIGKILL, config=config, environment=environment, stopper=stopper
    )
    await expire_leases_and_claims(postgres_url)
    rerun = await run_to_end(["once"], config, environment)
    end = await read_end_state(postgres_url)

    assert rerun.process.returncode == 0, rerun.stderr
    assert "scan_adopted" in rerun.event_names()
    scans_created = len(simulator.state.scans)
    assert scans_created == 1
    assert [scan.scan_id for scan in end.scans] == [simulator.state.scans[0].id]
    assert end.states == ONE_SCAN_STATES
    assert set(end.deliveries_by_status()) == {"sent"}
