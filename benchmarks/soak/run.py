"""Soak the daemon: a medium team on a short interval, with random API faults, for N minutes.

The daemon runs as its own process (`python -m service run`) against a simulator served from
this script, which responds to a fifth of the requests with a 429, a 5xx, a one-second delay or a
dropped connection. After every cycle the script reads the daemon's open file descriptors and
resident memory from /proc and its database connections (PostgreSQL: rows of pg_stat_activity
with the daemon's application_name; SQLite: descriptors open on the database file). At the end
it stops the daemon with SIGTERM and prints a verdict: every cycle ended, and descriptors,
connections and memory stayed flat.

    python benchmarks/soak/run.py --minutes 10
    python benchmarks/soak/run.py --minutes 10 --database-url sqlite --output soak.json

PostgreSQL comes from --database-url or CSPM_WATCH_TEST_POSTGRES_URL; the script works in a
schema of its own and drops it at the end. Linux only (/proc). Not part of `make test`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import signal
import statistics
import sys
import tempfile
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from service.logging import configure_logging
from service.simulator import FaultKind, generate_scenario, run_simulator
from service.storage import create_engine

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Names of the variables that carry the secrets to the daemon, not secrets themselves.
TOKEN_VARIABLE = "CSPM_SOAK_DO_TOKEN"  # noqa: S105
SECRET_VARIABLE = "CSPM_SOAK_WEBHOOK_SECRET"  # noqa: S105

# The medium team of the benchmarks: about 100 findings and 5,000 affected resources.
TEAM_SEED = 20260807
TEAM_RULES = 110
TEAM_RESOURCES = 5_000
TEAM_SCANS = 4

FAULT_RATE = 0.2
FAULT_KINDS = (
    FaultKind.RATE_LIMITED,
    FaultKind.SERVER_ERROR,
    FaultKind.BAD_GATEWAY,
    FaultKind.SERVICE_UNAVAILABLE,
    FaultKind.DELAY,
    FaultKind.DROP_BEFORE,
    FaultKind.DROP_AFTER,
)
FAULT_SEED = 11

# Readings of the first cycles are left out of the flatness check: pools, caches and the
# allocator grow to their working size there.
WARM_UP_CYCLES = 3
# Allowed growth between the first and the last third of the readings after warm-up.
MAX_FD_GROWTH = 2
MAX_CONNECTION_GROWTH = 1
MAX_RSS_GROWTH_MB = 10.0
# How long the last cycle may take to end after the soak time is over.
LAST_CYCLE_TIMEOUT_S = 600.0


@dataclass
class Reading:
    """The daemon's resources after one cycle."""

    cycle: int
    at_s: float
    status: str
    duration_s: float
    fds: int
    db_connections: int
    rss_mb: float


@dataclass
class Soak:
    """Readings of the daemon, and counts of the log events that start and end cycles."""

    readings: list[Reading] = field(default_factory=list)
    started: int = 0
    finished: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    webhook_messages: int = 0
    cycle_ended: asyncio.Event = field(default_factory=asyncio.Event)
    # Cycles started and ended when the soak time was over and the last cycle had ended.
    counts_at_stop: tuple[int, int] = (0, 0)
    hung: bool = False


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="soak time in minutes")
    parser.add_argument(
        "--interval-s", type=int, default=30, help="the target's schedule interval in seconds"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("CSPM_WATCH_TEST_POSTGRES_URL", "sqlite"),
        help="a PostgreSQL URL, or 'sqlite' for a file in a temporary directory",
    )
    parser.add_argument("--output", type=Path, help="also write the readings as JSON here")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# The world around the daemon


@asynccontextmanager
async def webhook_receiver(soak: Soak) -> AsyncIterator[str]:
    """Serve a receiver that accepts every webhook message with 204, and yield its URL."""

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        soak.webhook_messages += 1
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hooks/cspm", accept)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/cspm"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def soak_database(database_url: str, directory: Path) -> AsyncIterator[tuple[str, str]]:
    """Yield the daemon's database URL and the name that finds its connections."""
    if database_url == "sqlite":
        path = directory / "cspm-watch.db"
        yield f"sqlite+aiosqlite:///{path}", str(path)
        return
    schema = f"soak_{uuid.uuid4().hex[:12]}"
    name = f"cspm-watch-{schema}"
    admin = create_engine(database_url, poolclass=NullPool)
    async with admin.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(database_url).update_query_dict(
            {"options": f"-csearch_path={schema}", "application_name": name}
        )
        yield url.render_as_string(hide_password=False), name
    finally:
        async with admin.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


def write_config(
    path: Path, *, api_url: str, database_url: str, webhook_url: str, interval_s: int
) -> None:
    path.write_text(
        textwrap.dedent(
            f"""\
            database_url: "{database_url}"
            api_url: {api_url}
            listen: 127.0.0.1:0
            log_level: INFO
            dispatch: {{interval_s: 5}}
            targets:
              - name: soak
                token_env: {TOKEN_VARIABLE}
                schedule: {{interval_s: {interval_s}}}
                poll: {{initial_interval_s: 1, max_interval_s: 5, timeout_s: 600}}
                resource_detail_min_severity: LOW
                alerts: {{min_severity: HIGH, notify_resolved: true}}
            notifiers:
              soc: {{type: webhook, url: "{webhook_url}", secret_env: {SECRET_VARIABLE}}}
            """
        )
    )


# ---------------------------------------------------------------------------------------------
# Readings


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def files_open_on(pid: int, path: str) -> int:
    count = 0
    for entry in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{entry}")
        except OSError:
            continue
        count += target.startswith(path)
    return count


async def db_connections(pid: int, sampler_url: str, name: str) -> int:
    """Count the daemon's database connections.

    `sampler_url` is the script's own URL, not the daemon's, so the count leaves out the
    connection that makes it.
    """
    if sampler_url.startswith("sqlite"):
        return files_open_on(pid, name)
    engine = create_engine(sampler_url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            query = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")
            return int(await connection.scalar(query, {"name": name}) or 0)
    finally:
        await engine.dispose()


# ---------------------------------------------------------------------------------------------
# The daemon


async def follow_daemon(
    process: asyncio.subprocess.Process, soak: Soak, sampler_url: str, name: str, started_s: float
) -> None:
    """Read the daemon's JSON log lines and take a reading after every cycle."""
    assert process.stderr is not None
    while line := await process.stderr.readline():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") in ("scan_triggered", "scan_resumed"):
            soak.started += 1
        if event.get("event") == "cycle_finished":
            await record_cycle(process.pid, event, soak, sampler_url, name, started_s)


async def record_cycle(
    pid: int, event: dict[str, Any], soak: Soak, sampler_url: str, name: str, started_s: float
) -> None:
    status = str(event.get("status"))
    soak.statuses[status] += 1
    if status != "skipped":
        soak.finished += 1
    reading = Reading(
        cycle=len(soak.readings) + 1,
        at_s=round(time.monotonic() - started_s, 1),
        status=status,
        duration_s=float(event.get("duration_s") or 0.0),
        fds=open_fds(pid),
        db_connections=await db_connections(pid, sampler_url, name),
        rss_mb=round(rss_mb(pid), 1),
    )
    soak.readings.append(reading)
    soak.cycle_ended.set()
    print(
        f"cycle {reading.cycle:3d}  t={reading.at_s:7.1f}s  {reading.status:<10}  "
        f"duration={reading.duration_s:6.1f}s  fds={reading.fds:3d}  "
        f"db_connections={reading.db_connections:2d}  rss={reading.rss_mb:6.1f} MB",
        flush=True,
    )


async def stop_after_last_cycle(process: asyncio.subprocess.Process, soak: Soak) -> int:
    """Wait until no cycle is running, then send SIGTERM and return the exit code.

    The counts at that moment go into the verdict: a cycle that starts right after it is
    stopped by the signal, which is no cycle left hanging.
    """
    try:
        async with asyncio.timeout(LAST_CYCLE_TIMEOUT_S):
            while soak.started > soak.finished:
                soak.cycle_ended.clear()
                await soak.cycle_ended.wait()
    except TimeoutError:
        soak.hung = True
    soak.counts_at_stop = (soak.started, soak.finished)
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(60):
        return await process.wait()


# ---------------------------------------------------------------------------------------------
# Verdict


def thirds(values: list[float]) -> tuple[float, float]:
    """Return the medians of the first and the last third."""
    size = max(len(values) // 3, 1)
    return statistics.median(values[:size]), statistics.median(values[-size:])


def verdict(soak: Soak, exit_code: int) -> tuple[bool, list[str]]:
    lines = [f"statuses: {dict(soak.statuses)}", f"webhook messages: {soak.webhook_messages}"]
    started, ended = soak.counts_at_stop
    checks: list[tuple[str, bool]] = [
        (f"daemon stopped with {exit_code} (143 expected)", exit_code == 143),
        (
            f"cycles that triggered or resumed a scan {started}, cycles ended {ended}, "
            f"a cycle still running {LAST_CYCLE_TIMEOUT_S:g} s after the soak: {soak.hung}",
            ended >= started and not soak.hung,
        ),
    ]
    steady = soak.readings[WARM_UP_CYCLES:]
    if len(steady) < 3:
        checks.append((f"only {len(steady)} readings after warm-up; soak longer", False))
    else:
        for label, values, limit in (
            ("fds", [float(r.fds) for r in steady], MAX_FD_GROWTH),
            ("db connections", [float(r.db_connections) for r in steady], MAX_CONNECTION_GROWTH),
            ("rss MB", [r.rss_mb for r in steady], MAX_RSS_GROWTH_MB),
        ):
            first, last = thirds(values)
            checks.append(
                (f"{label}: first third {first:g}, last third {last:g}, max {max(values):g}",
                 last - first <= limit)
            )  # fmt: skip
    lines.extend(f"{'ok  ' if passed else 'FAIL'} {label}" for label, passed in checks)
    return all(passed for _, passed in checks), lines


# ---------------------------------------------------------------------------------------------


async def soak_daemon(arguments: argparse.Namespace) -> int:
    # The simulator in this process logs every fault at debug level; keep its warnings only.
    configure_logging(level="WARNING")
    soak = Soak()
    team = generate_scenario(
        TEAM_SEED, rules=TEAM_RULES, resources=TEAM_RESOURCES, scans=TEAM_SCANS, in_progress_polls=2
    )
    with tempfile.TemporaryDirectory(prefix="cspm-soak-") as directory:
        async with (
            run_simulator(team) as simulator,
            webhook_receiver(soak) as webhook_url,
            soak_database(arguments.database_url, Path(directory)) as (database_url, name),
        ):
            simulator.faults.add_random(FAULT_RATE, FAULT_KINDS, FAULT_SEED)
            config = Path(directory) / "cspm-watch.yaml"
            write_config(
                config,
                api_url=simulator.url,
                database_url=database_url,
                webhook_url=webhook_url,
                interval_s=arguments.interval_s,
            )
            # Connections are counted through the script's own URL, not the daemon's.
            exit_code = await run_daemon_for(
                arguments.minutes, config, simulator.token, soak, arguments.database_url, name
            )
            faulted = len(simulator.faults.applied)
            print(f"simulator: {simulator.stats.total} requests, {faulted} faulted")
    passed, lines = verdict(soak, exit_code)
    print("\n".join(lines))
    print("verdict:", "PASS" if passed else "FAIL")
    if arguments.output is not None:
        result = {
            "readings": [asdict(r) for r in soak.readings],
            "verdict": lines,
            "passed": passed,
        }
        arguments.output.write_text(json.dumps(result, indent=2))
    return 0 if passed else 1


async def run_daemon_for(
    minutes: float, config: Path, token: str, soak: Soak, sampler_url: str, name: str
) -> int:
    env = {**os.environ, "CSPM_WATCH_CONFIG": str(config), TOKEN_VARIABLE: token}
    env[SECRET_VARIABLE] = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
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
    started_s = time.monotonic()
    follower = asyncio.create_task(follow_daemon(process, soak, sampler_url, name, started_s))
    try:
        await asyncio.sleep(minutes * 60)
        return await stop_after_last_cycle(process, soak)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await follower


def main() -> None:
    arguments = parse_arguments(sys.argv[1:])
    raise SystemExit(asyncio.run(soak_daemon(arguments)))


if __name__ == "__main__":
    main()
