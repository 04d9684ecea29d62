"""The whole cycle against the simulator over HTTP, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import select

from service.digitalocean.models import ScanStatus
from service.runtime import Runtime, open_runtime
from service.scanning.cycle import CycleStatus
from service.scanning.lease import claim_lease
from service.simulator import FaultKind
from service.storage import DeliveryRecord, FindingStateRecord, ScanRecord
from tests.scanning.support import (
    LIFECYCLE_SCANS,
    RULE_BACKUPS,
    RULE_BUCKET,
    RULE_FIREWALL,
    scenario,
    settings_for,
    wait_until,
    write_config,
)
from tests.storage.conftest import TestDatabase
from tests.support.simulators import SimulatorFactory


async def _deliveries(runtime: Runtime) -> list[DeliveryRecord]:
    async with runtime.sessions() as session:
        return list(
            (await session.scalars(select(DeliveryRecord).order_by(DeliveryRecord.id))).all()
        )


async def _states(runtime: Runtime) -> dict[tuple[str, str], FindingStateRecord]:
    async with runtime.sessions() as session:
        rows = (await session.scalars(select(FindingStateRecord))).all()
    return {(row.rule_uuid, row.resource_urn): row for row in rows}


async def _scan_rows(runtime: Runtime) -> list[ScanRecord]:
    async with runtime.sessions() as session:
        return list((await session.scalars(select(ScanRecord).order_by(ScanRecord.id))).all())


async def test_cycle_lifecycle_baseline_new_escalated_resolved_reopened(
    tmp_path: Path, make_simulator: SimulatorFactory, database: TestDatabase
) -> None:
    simulator = await make_simulator(scenario(LIFECYCLE_SCANS))
    path = write_config(tmp_path, api_url=simulator.url, database_url=database.url)
    settings = settings_for(path, simulator.token)
    target = settings.targets[0]

    async with open_runtime(settings) as runtime:
        baseline = await runtime.run_target(target)
        assert baseline.status is CycleStatus.COMPLETED
        assert baseline.counts["new"] == 2
        assert [d.kind for d in await _deliveries(runtime)] == ["first_scan_summary"]

        second = await runtime.run_target(target)
        assert second.counts["new"] == 1
        assert second.counts["escalated"] == 1
        assert second.counts["unchanged"] == 1
        assert second.alerted == 2

        third = await runtime.run_target(target)
        assert third.counts["resolved"] == 1
        states = await _states(runtime)
        assert states[(RULE_FIREWALL, "do:droplet:1001")].status == "resolved"

        fourth = await runtime.run_target(target)
        assert fourth.counts["reopened"] == 1
        states = await _states(runtime)
        firewall = states[(RULE_FIREWALL, "do:droplet:1001")]
        assert firewall.status == "open"
        assert firewall.times_reopened == 1
        assert states[(RULE_BACKUPS, "do:droplet:1002")].severity == "HIGH"
        assert states[(RULE_BACKUPS, "do:droplet:1002")].previous_severity == "MEDIUM"
        assert states[(RULE_BUCKET, "do:space:uploads")].status == "open"

        kinds = [d.kind for d in await _deliveries(runtime)]
        assert kinds == ["first_scan_summary", "findings", "resolved", "findings"]
    assert len(simulator.state.scans) == 4


async def test_cycle_repeated_run_enqueues_nothing_twice(
    tmp_path: Path, make_simulator: SimulatorFactory, database: TestDatabase
) -> None:
    scans = LIFECYCLE_SCANS + textwrap.dedent(
        """
        - label: same again
          severity: {backups: HIGH}
          findings:
            firewall: ["do:droplet:1001"]
            backups: ["do:droplet:1002"]
            bucket: ["do:space:uploads"]
        """
    )
    simulator = await make_simulator(scenario(scans))
    path = write_config(tmp_path, api_url=simulator.url, database_url=database.url)
    settings = settings_for(path, simulator.token)
    async with open_runtime(settings) as runtime:
        for _ in range(5):
            await runtime.run_target(settings.targets[0])
        before = len(await _deliveries(runtime))
        result = await runtime.run_target(settings.targets[0])
        assert result.status is CycleStatus.COMPLETED
        assert result.alerted == 0
        assert len(await _deliveries(runtime)) == before


@pytest.mark.parametrize(
    ("outcome", "status_text"),
    [("FAILED", "FAILED"), ("CSPM_NOT_ENABLED", "CSPM_NOT_ENABLED")],
)
async def test_cycle_failed_scan_records_reason_without_alerts(
    tmp_path: Path,
    make_simulator: SimulatorFactory,
    database: TestDatabase,
    outcome: str,
    status_text: str,
) -> None:
    simulator = await make_simulator(
        scenario(f'- outcome: {outcome}\n  findings: {{firewall: ["do:droplet:1001"]}}\n')
    )
    path = write_config(tmp_path, api_url=simulator.url, database_url=database.url)
    settings = settings_for(path, simulator.token)
    async with open_runtime(settings) as runtime:
        first = await runtime.run_target(settings.targets[0])
        assert first.status is CycleStatus.SCAN_FAILED
        assert status_text in first.reason
        assert await _deliveries(runtime) == []
        assert await _states(runtime) == {}
        rows = await _scan_rows(runtime)
        assert rows[0].status == status_text
        assert rows[0].error is not None

        # failure_alert_after is 2: the second failure in a row alerts, the third does not.
        await runtime.run_target(settings.targets[0])
        await runtime.run_target(settings.targets[0])
        kinds = [d.kind for d in await _deliveries(runtime)]
        assert kinds == ["target_failing"]


async def test_cycle_scan_that_never_finishes_times_out(
    tmp_path: Path, make_simulator: SimulatorFactory, database: TestDatabase
) -> None:
    simulator = await make_simulator(scenario("- outcome: IN_PROGRESS\n  findings: {}\n"))
    path = write_config(
        tmp_path,
        api_url=simulator.url,
        database_url=database.url,
        poll="{initial_interval_s: 0.05, max_interval_s: 0.2, timeout_s: 1}",
    )
    settings = settings_for(path, simulator.token)
    async with open_runtime(settings) as runtime:
        result = await runtime.run_target(settings.targets[0])
        assert result.status is CycleStatus.TIMED_OUT
        assert "poll.timeout_s=1" in result.reason
        rows = await _scan_rows(runtime)
        assert rows[0].error is not None
        assert await _states(runtime) == {}


async def test_cycle_resumes_scan_after_restart(
    tmp_path: Path, make_simulator: SimulatorFactory, database: TestDatabase
) -> None:
    simulator = await make_simulator(
        scenario('- in_progress_polls: 4\n  findings: {firewall: ["do:droplet:1001"]}\n')
    )
    path = write_config(
        tmp_path,
        api_url=simulator.url,
        database_url=database.url,
        poll="{initial_interval_s: 0.3, max_interval_s: 0.3, timeout_s: 30}",
    )
    settings = settings_for(path, simulator.token)
    target = settings.targets[0]

    async with open_runtime(settings) as runtime:
        task = asyncio.create_task(runtime.run_target(target))
        await wait_until(lambda: simulator.stats.count("get_scan") >= 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        rows = await _scan_rows(runtime)
        assert [row.status for row in rows] == [ScanStatus.IN_PROGRESS.value]

    async with open_runtime(settings) as restarted:
        result = await restarted.run_target(target)
    assert result.status is CycleStatus.COMPLETED
    assert result.scan_id == rows[0].scan_id
    assert len(simulator.state.scans) == 1
    assert simulator.stats.count("create_scan") == 1


async def test_cycle_adopts_unrecorded_scan(
    tmp_path: Path, make_simulator: SimulatorFactory, database: TestDatabase
) -> None:
    """A cycle killed after the POST but before recording the scan leaves its mark; the next
    cycle adopts DigitalOcean's running scan instead of creating another."""
    simulator = await make_simulator(
        scenario('- in_progress_polls: 2\n  findings: {firewall: ["do:droplet:1001"]}\n')
    )
    path = write_config(tmp_path, api_url=simulator.url, database_url=database.url)
    settings = settings_for(path, simulator.token)
    target = settings.targets[0]

    async with open_runtime(settings) as runtime:
        from service.runtime import utc_now
        from service.storage.targets import mark_cycle_started

        async with runtime.sessions.begin() as session:
            await mark_cycle_started(session, target.name, now=utc_now())
        await runtime.clients[target.name].create_scan()  # the dead cycle's POST

        result = await runtime.run_target(target)
    assert result.status is CycleStatus.COMPLETED
    assert len(simulator.state.scans) == 1


async def test_cycle_skips_target_leased_by_another_process(
    tmp_path: Path, make_simulator: SimulatorFactory, database: TestDatabase
) -> None:
    simulator = await make_simulator(scenario(LIFECYCLE_SCANS))
    path = write_config(tmp_path, api_url=simulator.url, database_url=database.url)
    settings = settings_for(path, simulator.token)
    async with open_runtime(settings) as runtime:
        from service.runtime import utc_now

        async with runtime.sessions.begin() as session:
            assert await claim_lease(session, "acme", "other-process", now=utc_now(), ttl_s=60)
        result = await runtime.run_target(settings.targets[0])
    assert result.status is CycleStatus.SKIPPED
    assert result.status.succeeded
    assert simulator.stats.count("create_scan") == 0


async def test_cycle_incomplete_collection_changes_nothing(
    tmp_path: Path, make_simulator: SimulatorFactory, database: TestDatabase
) -> None:
    simulator = await make_simulator(scenario(LIFECYCLE_SCANS), validate=False)
    path = write_config(tmp_path, api_url=simulator.url, database_url=database.url)
    settings = settings_for(path, simulator.token)
    target = settings.targets[0]
    async with open_runtime(settings) as runtime:
        await runtime.run_target(target)
        states_before = {key: row.status for key, row in (await _states(runtime)).items()}

        simulator.faults.add("affected_resources", FaultKind.MALFORMED_BODY, times=50)
        result = await runtime.run_target(target)
        assert result.status is CycleStatus.INCOMPLETE
        states_after = {key: row.status for key, row in (await _states(runtime)).items()}
        assert states_after == states_before
        assert [d.kind for d in await _deliveries(runtime)] == ["first_scan_summary"]
        rows = await _scan_rows(runtime)
        assert rows[-1].collection_complete is False
