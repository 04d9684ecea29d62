"""Two daemons and a `once` run against one PostgreSQL database: one scan per schedule slot,
one delivery per alert.

Interval schedules fall on multiples of `interval_s` since the Unix epoch, so both daemons
share the slots; a slot is identified by `requested_at // interval_s`.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

import pytest

from service.config import load_settings
from service.runtime import EXIT_SIGTERM, open_runtime
from tests.faults.processes import ServiceProcess, assert_clean_output, start_service
from tests.faults.webhook_sink import WebhookSink
from tests.faults.world import (
    SLACK_TOKEN,
    WEBHOOK_SECRET,
    Receivers,
    read_end_state,
    service_environment,
    write_config,
)
from tests.scanning.support import scenario
from tests.support.simulators import SimulatorFactory
from tests.support.slack_server import SlackServer

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

INTERVAL_S = 3
SLOTS_TO_WATCH = 3

# Every scan adds a HIGH or CRITICAL finding, so every scan's cycle enqueues alerts.
GROWING_SCANS = """
- in_progress_polls: 1
  findings: {firewall: ["do:droplet:1001"]}
- in_progress_polls: 1
  findings: {firewall: ["do:droplet:1001"], bucket: ["do:space:uploads"]}
- in_progress_polls: 1
  findings: {firewall: ["do:droplet:1001", "do:droplet:1002"], bucket: ["do:space:uploads"]}
- in_progress_polls: 1
  severity: {backups: HIGH}
  findings:
    firewall: ["do:droplet:1001", "do:droplet:1002"]
    bucket: ["do:space:uploads"]
    backups: ["do:droplet:1002"]
"""


def triggered_scans(process: ServiceProcess) -> list[str]:
    return [str(e["scan_id"]) for e in process.events() if e.get("event") == "scan_triggered"]


async def test_two_daemons_and_once_share_one_database(
    tmp_path: Path,
    make_simulator: SimulatorFactory,
    slack_server: SlackServer,
    webhook_sink: WebhookSink,
    receivers: Receivers,
    postgres_url: str,
) -> None:
    simulator = await make_simulator(scenario(GROWING_SCANS))
    config = write_config(
        tmp_path,
        api_url=simulator.url,
        database_url=postgres_url,
        receivers=receivers,
        schedule=f"{{interval_s: {INTERVAL_S}}}",
    )
    environment = service_environment(simulator.token)

    # Replicas start at unrelated moments: the second daemon starts a good part of an
    # interval after the first, longer than one cycle takes.
    first = await start_service(["run"], config, environment)
    await first.wait_for_event("daemon_started")
    await asyncio.sleep(INTERVAL_S / 3)
    daemons = [first, await start_service(["run"], config, environment)]
    once = await start_service(["once"], config, environment)
    try:
        once_code = await once.finish()
        # Every slot, each daemon logs one cycle: one completed, the other skipped.
        await daemons[1].wait_for_event("cycle_finished", count=SLOTS_TO_WATCH)
    finally:
        for daemon in daemons:
            daemon.send(signal.SIGTERM)
        daemon_codes = [await daemon.finish() for daemon in daemons]

    # Send what the last cycles enqueued, as the next daemon to start would.
    settings = load_settings(config, environment)
    async with open_runtime(settings, migrate=False) as runtime:
        await runtime.dispatch()
    end = await read_end_state(postgres_url)

    assert once_code == 0, once.stderr
    assert daemon_codes == [EXIT_SIGTERM, EXIT_SIGTERM]
    for process in [once, *daemons]:
        assert_clean_output(process, simulator.token, SLACK_TOKEN, WEBHOOK_SECRET)

    # The daemons' scheduled cycles scan each slot once; `once` is a run of its own, which
    # the lease keeps from overlapping a daemon's cycle.
    by_daemons = [scan_id for daemon in daemons for scan_id in triggered_scans(daemon)]
    by_once = triggered_scans(once)
    requested_at = {scan.scan_id: scan.requested_at for scan in end.scans}
    scans_per_slot = Counter(
        int(requested_at[scan_id].timestamp()) // INTERVAL_S for scan_id in by_daemons
    )
    assert max(scans_per_slot.values()) == 1, scans_per_slot
    assert len(by_daemons) >= 1
    assert len(by_once) <= 1
    # A scan by `once` fills its slot, so the daemons skip that slot; together they scan
    # every watched slot but the first, which may have begun before the daemons started.
    assert len(by_daemons) + len(by_once) >= SLOTS_TO_WATCH - 1
    created = [scan.id for scan in simulator.state.scans]
    assert sorted(created) == sorted(requested_at) == sorted(by_daemons + by_once)

    assert set(end.deliveries_by_status()) == {"sent"}
    assert webhook_sink.state.repeated_ids() == {}
    assert len(webhook_sink.state.ids) == sum(1 for d in end.deliveries if d.notifier == "soc")
    slack_rows = sum(1 for d in end.deliveries if d.notifier == "security")
    assert len(slack_server.state.accepted) == slack_rows
