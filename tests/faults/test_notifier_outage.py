"""Slack and the webhook receiver down for several cycles of the default six-hour schedule,
then back: every alert must arrive once, in the order it was enqueued, per channel.

The cycles run for real against the simulator. The dispatcher runs on a fake clock that jumps
from one due delivery to the next, as the daemon's dispatch job would meet them over the hours
of the outage. The test thus covers the real backoff and attempt budget without waiting.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import load_settings
from service.notifiers.dispatcher import SERVICE_RETRY_WINDOW_S, Dispatcher
from service.runtime import Runtime, open_runtime
from service.storage import DeliveryRecord
from tests.faults.reference import outcome_of, undisturbed_outcome
from tests.faults.webhook_sink import WebhookSink
from tests.faults.world import Receivers, read_end_state, service_environment, write_config
from tests.notifiers.support import FakeClock
from tests.scanning.support import scenario
from tests.support.simulators import SimulatorFactory
from tests.support.slack_server import SlackServer

pytestmark = pytest.mark.slow

# Every scan adds findings at or above HIGH, so every cycle enqueues new alerts.
GROWING_SCANS = """
- findings: {firewall: ["do:droplet:1001"]}
- findings: {firewall: ["do:droplet:1001"], bucket: ["do:space:uploads"]}
- findings: {firewall: ["do:droplet:1001", "do:droplet:1002"], bucket: ["do:space:uploads"]}
- severity: {backups: HIGH}
  findings:
    firewall: ["do:droplet:1001", "do:droplet:1002"]
    bucket: ["do:space:uploads"]
    backups: ["do:droplet:1002"]
"""
CYCLES_DOWN = 4
SCHEDULE_INTERVAL = timedelta(hours=6)


async def next_due_at(sessions: async_sessionmaker[AsyncSession]) -> datetime | None:
    async with sessions() as session:
        statement = select(func.min(DeliveryRecord.next_attempt_at)).where(
            DeliveryRecord.status.in_(("pending", "sending"))
        )
        value = await session.scalar(statement)
    return value if isinstance(value, datetime) else None


async def dispatch_until(runtime: Runtime, clock: FakeClock, end: datetime) -> None:
    """Dispatch as the daemon does at every moment a delivery falls due before `end`, then
    move the clock to `end`."""
    while True:
        # The runtime's settings on the fake clock. A new dispatcher each time, because its
        # pacing between messages of a channel counts real seconds, which the fake clock skips.
        dispatcher = Dispatcher(
            runtime.sessions,
            runtime.notifiers,
            retry_window_s=SERVICE_RETRY_WINDOW_S,
            clock=clock,
            sleep=clock.sleep,
            max_wait_s=0.0,
        )
        await dispatcher.dispatch_pending()
        due_at = await next_due_at(runtime.sessions)
        if due_at is None or due_at >= end:
            break
        clock.now = max(clock.now, due_at)
    clock.now = end


def slack_order(slack: SlackServer) -> list[str]:
    return [
        json.dumps(message.body.get("blocks"), sort_keys=True) for message in slack.state.accepted
    ]


async def test_alerts_survive_receivers_down_for_several_cycles(
    tmp_path: Path,
    make_simulator: SimulatorFactory,
    slack_server: SlackServer,
    webhook_sink: WebhookSink,
    receivers: Receivers,
    sqlite_url: str,
) -> None:
    team = scenario(GROWING_SCANS)
    expected = await undisturbed_outcome(tmp_path / "reference", team, CYCLES_DOWN)
    simulator = await make_simulator(team)
    config = write_config(
        tmp_path, api_url=simulator.url, database_url=sqlite_url, receivers=receivers
    )
    settings = load_settings(config, service_environment(simulator.token))
    (target,) = settings.targets
    slack_server.state.down = True
    webhook_sink.state.down_status = 503

    clock = FakeClock(datetime.now(UTC))
    async with open_runtime(settings) as runtime:
        for _ in range(CYCLES_DOWN):
            result = await runtime.run_target(target)
            assert result.status.succeeded, result.reason
            await dispatch_until(runtime, clock, clock.now + SCHEDULE_INTERVAL)

        slack_server.state.down = False
        webhook_sink.state.down_status = None
        await dispatch_until(runtime, clock, clock.now + SCHEDULE_INTERVAL)

    end = await read_end_state(sqlite_url)
    outcome = outcome_of(end.states, slack_server.state, webhook_sink.state)

    assert slack_server.state.request_count > len(slack_server.state.accepted)
    assert webhook_sink.state.refused > 0
    assert end.deliveries_by_status() == {"sent": len(end.deliveries)}
    assert outcome.webhook_alerts == expected.webhook_alerts
    assert outcome.slack_messages == expected.slack_messages
    assert webhook_sink.state.repeated_ids() == {}

    # In enqueue order per channel: the outbox rows by creation, against the arrivals.
    webhook_rows = [row.webhook_id for row in end.deliveries if row.notifier == "soc"]
    assert [webhook_id for webhook_id, _ in webhook_sink.state.accepted] == webhook_rows
    slack_rows = [
        json.dumps(json.loads(row.payload).get("blocks"), sort_keys=True)
        for row in end.deliveries
        if row.notifier == "security"
    ]
    assert slack_order(slack_server) == slack_rows
