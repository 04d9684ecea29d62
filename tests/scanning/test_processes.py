"""`once` and `demo` as real processes: concurrency through leases, signals, the demo."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from service.runtime import EXIT_SIGTERM
from service.storage import DeliveryRecord, ScanRecord, create_engine, create_sessionmaker
from tests.scanning.support import (
    LIFECYCLE_SCANS,
    TOKEN_VARIABLE,
    scenario,
    wait_until,
    write_config,
)
from tests.storage.conftest import postgres_url_or_skip
from tests.support.simulators import SimulatorFactory

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _environment(config_path: Path, token: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"CSPM_WATCH_CONFIG": str(config_path), TOKEN_VARIABLE: token})
    return env


async def _start_once(config_path: Path, token: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "once",
        cwd=PROJECT_ROOT,
        env=_environment(config_path, token),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _count(database_url: str, table: type[object]) -> int:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            return int(await session.scalar(select(func.count()).select_from(table)) or 0)
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_once_two_processes_create_one_scan(
    tmp_path: Path, make_simulator: SimulatorFactory
) -> None:
    from tests.storage.conftest import _postgres_schema

    simulator = await make_simulator(
        scenario('- in_progress_polls: 3\n  findings: {firewall: ["do:droplet:1001"]}\n')
    )
    async for database_url in _postgres_schema(postgres_url_or_skip()):
        config = write_config(tmp_path, api_url=simulator.url, database_url=database_url)
        first, second = await asyncio.gather(
            _start_once(config, simulator.token), _start_once(config, simulator.token)
        )
        outputs = await asyncio.gather(first.communicate(), second.communicate())

        assert first.returncode == 0, outputs[0][1].decode()
        assert second.returncode == 0, outputs[1][1].decode()
        assert simulator.stats.count("create_scan") == 1
        assert await _count(database_url, ScanRecord) == 1
        # One first-scan summary for the one console notifier, enqueued once.
        assert await _count(database_url, DeliveryRecord) == 1
        stderr = b"".join(err for _, err in outputs).decode()
        assert "target_busy" in stderr
        assert simulator.token not in stderr


async def test_once_sigterm_during_polling_exits_cleanly_and_resumes(
    tmp_path: Path, make_simulator: SimulatorFactory
) -> None:
    simulator = await make_simulator(
        scenario('- in_progress_polls: 3\n  findings: {firewall: ["do:droplet:1001"]}\n')
    )
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'cspm-watch.db'}"
    config = write_config(
        tmp_path,
        api_url=simulator.url,
        database_url=database_url,
        poll="{initial_interval_s: 1, max_interval_s: 1, timeout_s: 60}",
    )
    process = await _start_once(config, simulator.token)
    await wait_until(lambda: simulator.stats.count("get_scan") >= 1)
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(10):
        _, stderr = await process.communicate()

    assert process.returncode == EXIT_SIGTERM, stderr.decode()
    assert b"shutdown_requested" in stderr
    assert b"Traceback" not in stderr
    assert await _count(database_url, ScanRecord) == 1

    rerun = await _start_once(config, simulator.token)
    _, stderr = await rerun.communicate()
    assert rerun.returncode == 0, stderr.decode()
    assert b"scan_resumed" in stderr
    assert simulator.stats.count("create_scan") == 1


async def test_once_exit_code_reports_failed_cycle(
    tmp_path: Path, make_simulator: SimulatorFactory
) -> None:
    simulator = await make_simulator(scenario("- outcome: FAILED\n  findings: {}\n"))
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'cspm-watch.db'}"
    config = write_config(tmp_path, api_url=simulator.url, database_url=database_url)
    process = await _start_once(config, simulator.token)
    _, stderr = await process.communicate()
    assert process.returncode == 1, stderr.decode()
    assert b"cycle_failed" in stderr


async def test_once_lifecycle_scenario_succeeds(
    tmp_path: Path, make_simulator: SimulatorFactory
) -> None:
    simulator = await make_simulator(scenario(LIFECYCLE_SCANS))
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'cspm-watch.db'}"
    config = write_config(tmp_path, api_url=simulator.url, database_url=database_url)
    process = await _start_once(config, simulator.token)
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    # The console notifier printed the first-scan summary.
    assert b"first scan" in stdout


async def test_demo_runs_to_the_end(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "demo",
        "--data-dir",
        str(tmp_path / "demo"),
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(120):
        stdout, stderr = await process.communicate()
    text = stdout.decode()
    assert process.returncode == 0, stderr.decode()
    assert "Cycle 3" in text
    assert "escalated from MEDIUM" in text
    assert "resolved" in text
    assert "Stored in the database" in text

    # The commands the demo suggests read what it stored, after the simulator has stopped.
    listing = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "--config",
        str(tmp_path / "demo" / "cspm-watch.yaml"),
        "scans",
        "list",
        "--stored",
        "--output",
        "json",
        cwd=PROJECT_ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await listing.communicate()
    assert listing.returncode == 0, stderr.decode()
    assert len(json.loads(stdout)) == 3
