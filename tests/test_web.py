"""The daemon's /healthz, /readyz and /metrics, against a real daemon process and the simulator.

Each daemon is `python -m service run` with `listen: 127.0.0.1:0`; the port it bound is read
from its `web_server_started` log line. The staleness rule of readiness is tested in-process
with a fixed clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from service.config import Settings, load_settings
from service.runtime import EXIT_SIGTERM
from service.scheduler import build_scheduler
from service.storage import create_engine, create_sessionmaker, upgrade_database
from service.storage.targets import record_cycle_success
from service.web import (
    WebState,
    check_readiness,
    check_scheduler,
    healthcheck_url,
    stale_after,
)
from tests.scanning.support import scenario, wait_until
from tests.storage.conftest import _postgres_schema, postgres_url_or_skip
from tests.support.simulators import SimulatorFactory

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TOKEN_VARIABLE = "WEB_TEST_DO_TOKEN"
# One HIGH finding on one Droplet, the same in every scan.
ONE_FINDING = '- findings: {firewall: ["do:droplet:1001"]}\n'
DAEMON_START_TIMEOUT_S = 30.0
DAEMON_STOP_TIMEOUT_S = 15.0


def write_daemon_config(
    directory: Path, *, api_url: str, database_url: str, interval_s: int = 1
) -> Path:
    """Write a one-target daemon configuration that listens on a free loopback port."""
    path = directory / "cspm-watch.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            database_url: "{database_url}"
            api_url: {api_url}
            listen: 127.0.0.1:0
            dispatch: {{interval_s: 1}}
            targets:
              - name: acme
                token_env: {TOKEN_VARIABLE}
                schedule: {{interval_s: {interval_s}}}
                poll: {{initial_interval_s: 0.05, max_interval_s: 0.2, timeout_s: 20}}
            notifiers:
              stdout: {{type: console, min_severity: LOW}}
            """
        )
    )
    return path


@dataclass
class Daemon:
    """A running `cspm-watch run` process, its bound port and the lines of its standard error."""

    process: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    port: int | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]


async def _read_lines(daemon: Daemon) -> None:
    assert daemon.process.stderr is not None
    async for raw in daemon.process.stderr:
        line = raw.decode().rstrip("\n")
        daemon.lines.append(line)
        if daemon.port is None and '"web_server_started"' in line:
            daemon.port = int(json.loads(line)["port"])


@contextlib.asynccontextmanager
async def run_daemon_process(config_path: Path, token: str) -> AsyncIterator[Daemon]:
    """Start the daemon, wait until it serves HTTP, and stop it with SIGTERM at the end."""
    env = dict(os.environ)
    env.update({"CSPM_WATCH_CONFIG": str(config_path), TOKEN_VARIABLE: token})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "run",
        cwd=PROJECT_ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    daemon = Daemon(process)
    reader = asyncio.create_task(_read_lines(daemon))
    try:
        await wait_until(
            lambda: daemon.port is not None or process.returncode is not None,
            timeout_s=DAEMON_START_TIMEOUT_S,
        )
        assert daemon.port is not None, "\n".join(daemon.lines)
        yield daemon
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(DAEMON_STOP_TIMEOUT_S):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


class TcpProxy:
    """A TCP forwarder from a free port on 127.0.0.1 to one address, which `cut` takes down.

    Cutting closes the listening socket and aborts every connection, as a database host that
    drops off the network would look to the daemon, without stopping the database itself.
    """

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        self._writers += [writer, upstream_writer]
        await asyncio.gather(
            self._pipe(reader, upstream_writer),
            self._pipe(upstream_reader, writer),
            return_exceptions=True,
        )

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def _samples(metrics_text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def _wait_for_completed_cycle(daemon: Daemon) -> dict[Any, float]:
    samples: dict[Any, float] = {}

    async def completed() -> bool:
        nonlocal samples
        _, text = await _get(daemon.url("/metrics"))
        samples = _samples(text)
        count = _value(samples, "cspm_watch_scan_cycles_total", target="acme", status="completed")
        return bool(count and count >= 1)

    async with asyncio.timeout(DAEMON_START_TIMEOUT_S):
        while not await completed():  # noqa: ASYNC110 - polls an HTTP endpoint
            await asyncio.sleep(0.2)
    return samples


# ---------------------------------------------------------------------------------------------
# Against a running daemon


async def test_daemon_healthz_answers_ok(tmp_path: Path, make_simulator: SimulatorFactory) -> None:
    simulator = await make_simulator(scenario(ONE_FINDING))
    config = write_daemon_config(
        tmp_path,
        api_url=simulator.url,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'cspm-watch.db'}",
        interval_s=3600,
    )
    async with run_daemon_process(config, simulator.token) as daemon:
        status, body = await _get(daemon.url("/healthz"))

    assert status == 200
    assert json.loads(body) == {"status": "ok"}
    assert daemon.process.returncode == EXIT_SIGTERM
    events = [event["event"] for event in daemon.events()]
    assert "web_server_stopped" in events
    assert "daemon_stopped" in events


async def test_daemon_readyz_turns_false_when_database_is_gone(
    tmp_path: Path, make_simulator: SimulatorFactory
) -> None:
    simulator = await make_simulator(scenario(ONE_FINDING))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    config = write_daemon_config(
        tmp_path,
        api_url=simulator.url,
        database_url=f"sqlite+aiosqlite:///{data_dir / 'cspm-watch.db'}",
        interval_s=3600,
    )
    async with run_daemon_process(config, simulator.token) as daemon:
        ready_status, ready_body = await _get(daemon.url("/readyz"))
        shutil.rmtree(data_dir)
        gone_status, gone_body = await _get(daemon.url("/readyz"))
        live_status, _ = await _get(daemon.url("/healthz"))

    assert ready_status == 200, ready_body
    assert json.loads(ready_body)["ready"] is True
    assert gone_status == 503
    gone = json.loads(gone_body)
    assert gone["ready"] is False
    assert gone["checks"]["database"]["ok"] is False
    assert "does not exist" in gone["checks"]["database"]["detail"]
    assert gone["checks"]["scheduler"] == {"ok": True}
    # A database outage takes the pod out of service but must not make Kubernetes restart it.
    assert live_status == 200
    lost = [event for event in daemon.events() if event["event"] == "readiness_lost"]
    assert len(lost) == 1
    assert "database" in lost[0]["failures"]


@pytest.mark.postgres
async def test_daemon_readyz_turns_false_when_postgresql_unreachable(
    tmp_path: Path, make_simulator: SimulatorFactory
) -> None:
    simulator = await make_simulator(scenario(ONE_FINDING))
    async for database_url in _postgres_schema(postgres_url_or_skip()):
        url = make_url(database_url)
        proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
        proxy_port = await proxy.start()
        proxied_url = url.set(host="127.0.0.1", port=proxy_port)
        config = write_daemon_config(
            tmp_path,
            api_url=simulator.url,
            database_url=proxied_url.render_as_string(hide_password=False),
            interval_s=3600,
        )
        async with run_daemon_process(config, simulator.token) as daemon:
            ready_status, ready_body = await _get(daemon.url("/readyz"))
            await proxy.cut()
            gone_status, gone_body = await _get(daemon.url("/readyz"))
            live_status, _ = await _get(daemon.url("/healthz"))

        assert ready_status == 200, ready_body
        assert gone_status == 503
        gone = json.loads(gone_body)
        assert gone["checks"]["database"]["ok"] is False
        assert gone["checks"]["database"]["detail"]
        assert gone["checks"]["targets"]["ok"] is False
        assert live_status == 200


async def test_daemon_metrics_after_cycle(tmp_path: Path, make_simulator: SimulatorFactory) -> None:
    simulator = await make_simulator(scenario(ONE_FINDING))
    config = write_daemon_config(
        tmp_path,
        api_url=simulator.url,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'cspm-watch.db'}",
    )
    async with run_daemon_process(config, simulator.token) as daemon:
        samples = await _wait_for_completed_cycle(daemon)
        # The console notifier's first-scan summary is sent by the next dispatch.
        await wait_until(lambda: any('"delivery_sent"' in line for line in daemon.lines))
        _, text = await _get(daemon.url("/metrics"))
        after_dispatch = _samples(text)

    def value(name: str, **labels: str) -> float | None:
        return _value(samples, name, **labels)

    assert value("cspm_watch_build_info", version="0.1.0") == 1
    assert value("cspm_watch_scan_cycles_total", target="acme", status="error") == 0
    count = value("cspm_watch_scan_cycle_duration_seconds_count", target="acme")
    assert count is not None
    assert count >= 1
    assert value("cspm_watch_open_findings", target="acme", severity="HIGH") == 1
    assert value("cspm_watch_open_findings", target="acme", severity="CRITICAL") == 0
    last_success = value("cspm_watch_last_success_timestamp_seconds", target="acme")
    assert last_success is not None
    assert last_success > datetime(2020, 1, 1, tzinfo=UTC).timestamp()
    created = value(
        "cspm_watch_api_requests_total", target="acme", operation="create_scan", status="201"
    )
    assert created is not None
    assert created >= 1
    budget = value("cspm_watch_api_rate_budget_remaining", target="acme")
    assert budget is not None
    assert 0 < budget <= 5000
    sent = _value(after_dispatch, "cspm_watch_deliveries_sent_total", notifier="stdout")
    assert sent is not None
    assert sent >= 1
    pending = _value(
        after_dispatch, "cspm_watch_outbox_deliveries", notifier="stdout", status="pending"
    )
    assert pending == 0
    assert (
        _value(after_dispatch, "cspm_watch_outbox_deliveries", notifier="stdout", status="failed")
        == 0
    )


async def test_daemon_logs_only_json_lines_without_token(
    tmp_path: Path, make_simulator: SimulatorFactory
) -> None:
    simulator = await make_simulator(scenario(ONE_FINDING))
    config = write_daemon_config(
        tmp_path,
        api_url=simulator.url,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'cspm-watch.db'}",
    )
    async with run_daemon_process(config, simulator.token) as daemon:
        await _wait_for_completed_cycle(daemon)

    assert daemon.lines
    for line in daemon.lines:
        event = json.loads(line)
        assert isinstance(event, dict)
        assert "event" in event
        assert simulator.token not in line
    summaries = [event for event in daemon.events() if event["event"] == "cycle_finished"]
    assert summaries
    assert summaries[0]["target"] == "acme"


# ---------------------------------------------------------------------------------------------
# Readiness in-process, with a fixed clock


def _settings(tmp_path: Path, schedule: str, database_url: str = "") -> Settings:
    path = tmp_path / "config.yaml"
    database_url = database_url or f"sqlite+aiosqlite:///{tmp_path / 'cspm-watch.db'}"
    path.write_text(
        textwrap.dedent(
            f"""\
            database_url: "{database_url}"
            targets:
              - name: acme
                token_env: {TOKEN_VARIABLE}
                schedule: {schedule}
                poll: {{timeout_s: 1800}}
            """
        )
    )
    return load_settings(path, {TOKEN_VARIABLE: "dop_v1_" + "0" * 64})


def test_stale_after_interval_schedule(tmp_path: Path) -> None:
    target = _settings(tmp_path, "{interval_s: 3600}").targets[0]
    reference_at = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

    assert stale_after(target, reference_at) == reference_at + timedelta(hours=2, minutes=30)


def test_stale_after_cron_schedule(tmp_path: Path) -> None:
    target = _settings(tmp_path, '{cron: "0 */6 * * *"}').targets[0]
    reference_at = datetime(2026, 3, 2, 0, 5, tzinfo=UTC)

    # Fire times after 00:05 are 06:00 and 12:00.
    assert stale_after(target, reference_at) == datetime(2026, 3, 2, 12, 30, tzinfo=UTC)


def test_stale_after_weekday_cron_spans_weekend(tmp_path: Path) -> None:
    target = _settings(tmp_path, '{cron: "0 9 * * 1-5"}').targets[0]
    friday = datetime(2026, 3, 6, 9, 5, tzinfo=UTC)

    # The next two runs are Monday and Tuesday at 09:00, so Saturday is not stale.
    assert stale_after(target, friday) == datetime(2026, 3, 10, 9, 30, tzinfo=UTC)


@pytest.fixture
async def web_state(tmp_path: Path) -> AsyncIterator[WebState]:
    """A WebState on a migrated SQLite database with a started scheduler (no job runs)."""
    settings = _settings(tmp_path, "{interval_s: 3600}")
    await upgrade_database(settings.database_url)
    engine = create_engine(settings.database_url)

    async def nothing(*_args: object) -> None:
        return None

    scheduler = build_scheduler(settings, run_target=nothing, dispatch=nothing, prune=nothing)
    scheduler.start(paused=True)
    started_at = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
    try:
        yield WebState(
            settings=settings,
            engine=engine,
            sessions=create_sessionmaker(engine),
            scheduler=scheduler,
            started_at=started_at,
            now=lambda: started_at,
        )
    finally:
        scheduler.shutdown(wait=False)
        await engine.dispose()


async def test_readiness_ready_within_two_intervals_of_start(web_state: WebState) -> None:
    web_state.now = lambda: web_state.started_at + timedelta(hours=2)

    readiness = await check_readiness(web_state)

    assert readiness.ready, readiness.failures()


async def test_readiness_stale_target_without_success(web_state: WebState) -> None:
    web_state.now = lambda: web_state.started_at + timedelta(hours=3)

    readiness = await check_readiness(web_state)

    assert not readiness.ready
    assert list(readiness.failures()) == ["targets"]
    assert "acme (no success since" in readiness.failures()["targets"]


async def test_readiness_recent_success_keeps_target_ready(web_state: WebState) -> None:
    success_at = web_state.started_at + timedelta(hours=2)
    async with web_state.sessions.begin() as session:
        await record_cycle_success(session, "acme", now=success_at)
    web_state.now = lambda: success_at + timedelta(hours=2)

    readiness = await check_readiness(web_state)

    assert readiness.ready, readiness.failures()


def test_readiness_scheduler_missing_fails(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "{interval_s: 3600}")

    result = check_scheduler(None, settings)

    assert not result.ok
    assert result.detail == "the scheduler is not running"


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        ({}, "http://127.0.0.1:8080/healthz"),
        ({"CSPM_WATCH_LISTEN": "0.0.0.0:9100"}, "http://127.0.0.1:9100/healthz"),
        ({"CSPM_WATCH_LISTEN": "[::]:9200"}, "http://127.0.0.1:9200/healthz"),
    ],
)
def test_healthcheck_url_follows_listen_variable(environ: dict[str, str], url: str) -> None:
    assert healthcheck_url(environ) == url
