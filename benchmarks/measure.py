"""One measurement each: a cycle of the service, the pydo baseline, the daemon's memory.

Each starts the simulator in this process and the measured program in a process of its own,
so that the program's peak memory and CPU time are its own, and returns what both sides saw.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness import TOKEN_VARIABLE, write_config
from simulated import serve_team, summarize
from storage_diff import blank_database
from team import MEASURED_SCAN_NUMBER, TeamSize, minimum_requests

from service.digitalocean.models import Severity
from service.simulator import Scenario, SimulatorRateLimits, generate_token

BENCH_DIRECTORY = Path(__file__).resolve().parent
# DigitalOcean's limits per token, which the client and the simulator both default to.
DIGITALOCEAN_PER_MINUTE = 250
DIGITALOCEAN_PER_HOUR = 5000
# Must match the configuration that harness.write_config writes.
RESOURCE_DETAIL_MIN_SEVERITY = Severity.LOW
ALERT_MIN_SEVERITY = Severity.HIGH
# A measured process that runs longer than this has hung.
PROCESS_TIMEOUT_S = 600.0


class BenchmarkError(Exception):
    """A measured process failed or hung; the message names the process and its output."""


@dataclasses.dataclass(frozen=True, slots=True)
class LimitsMode:
    """Rate limits of one series of runs: DigitalOcean's, times `factor`, for both sides."""

    name: str
    factor: int

    @property
    def limits(self) -> SimulatorRateLimits:
        return SimulatorRateLimits(
            per_minute=DIGITALOCEAN_PER_MINUTE * self.factor,
            per_hour=DIGITALOCEAN_PER_HOUR * self.factor,
        )

    def as_dict(self) -> dict[str, Any]:
        limits = self.limits
        return {
            "name": self.name,
            "factor": self.factor,
            "per_minute": limits.per_minute,
            "per_hour": limits.per_hour,
        }


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """The measurements of one invocation, from the command line."""

    sizes: tuple[TeamSize, ...]
    databases: tuple[str, ...]
    postgres_url: str
    latency_s: float
    poll_interval_s: float
    max_concurrency: int
    raised: LimitsMode
    digitalocean: LimitsMode
    daemon_cycles: int
    rate_bound: bool
    pydo: bool
    output_directory: Path
    profile_directory: Path | None


async def run_process(
    script: str, arguments: Sequence[str], *, environment: dict[str, str], directory: Path
) -> dict[str, Any]:
    """Run a benchmark script in a new Python process and return the JSON it wrote.

    CSPM_WATCH_* variables of this process are left out of the child's environment, so that
    none of them overrides the benchmark's configuration file.
    """
    output = directory / f"{Path(script).stem}.json"
    log_path = directory / f"{Path(script).stem}.log"
    env = {key: value for key, value in os.environ.items() if not key.startswith("CSPM_WATCH_")}
    env.update(environment)
    command = [sys.executable, str(BENCH_DIRECTORY / script), *arguments, "--output", str(output)]
    with log_path.open("wb") as log_file:
        process = await asyncio.create_subprocess_exec(
            *command, stdout=log_file, stderr=asyncio.subprocess.STDOUT, env=env
        )
        try:
            async with asyncio.timeout(PROCESS_TIMEOUT_S):
                code = await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise BenchmarkError(
                f"{script} ran past {PROCESS_TIMEOUT_S:g} s and was stopped; its output:\n"
                f"{_tail(log_path)}"
            ) from None
    if code != 0:
        raise BenchmarkError(f"{script} exited with status {code}; its output:\n{_tail(log_path)}")
    result: dict[str, Any] = json.loads(output.read_text())
    return result


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _client_arguments(plan: Plan, limits: SimulatorRateLimits) -> list[str]:
    return [
        "--per-minute",
        str(limits.per_minute),
        "--per-hour",
        str(limits.per_hour),
        "--max-concurrency",
        str(plan.max_concurrency),
    ]


async def measure_cycle(
    plan: Plan, team: Scenario, size: TeamSize, database: str, mode: LimitsMode
) -> dict[str, Any]:
    """Store the team's first scan, then measure the cycle that reads its second scan.

    The first scan runs under the raised limits, whatever `mode` is, against a simulator of
    its own. The measured cycle's simulator creates the first scan in its own state, so the
    service's scan is the scenario's second.
    """
    token = generate_token()
    async with blank_database(database, plan.postgres_url) as url:
        with tempfile.TemporaryDirectory(prefix="cspm-bench-") as name:
            directory = Path(name)
            config = write_config(
                directory, database_url=url, initial_poll_interval_s=plan.poll_interval_s
            )
            label = f"{size.name}-{database}-{mode.name}"
            first = await _run_cycle(
                plan, team, config, token, plan.raised, 0, profile=f"{label}-first"
            )
            measured = await _run_cycle(
                plan, team, config, token, mode, MEASURED_SCAN_NUMBER - 1, profile=label
            )
    return {
        "size": size.name,
        "database": database,
        "limits": mode.name,
        "first_scan": first,
        **measured,
    }


async def _run_cycle(
    plan: Plan,
    team: Scenario,
    config: Path,
    token: str,
    mode: LimitsMode,
    scans_before: int,
    *,
    profile: str,
) -> dict[str, Any]:
    limits = mode.limits
    arguments = ["--config", str(config), *_client_arguments(plan, limits)]
    if scans_before == 0:
        arguments.append("--migrate")
    if plan.profile_directory is not None:
        arguments += ["--profile", str(plan.profile_directory / f"{profile}.pstats")]
    async with serve_team(
        team, latency_s=plan.latency_s, limits=limits, token=token, scans_before=scans_before
    ) as (simulator, recorder):
        with tempfile.TemporaryDirectory(prefix="cspm-bench-cycle-") as name:
            process = await run_process(
                "cycle_once.py",
                arguments,
                environment={TOKEN_VARIABLE: token, "CSPM_WATCH_API_URL": simulator.url},
                directory=Path(name),
            )
        summary = summarize(recorder.requests, limits)
    if process["status"] != "completed":
        raise BenchmarkError(f"the cycle ended {process['status']}: {process['reason']}")
    minimum = minimum_requests(
        team,
        scans_before + 1,
        resource_detail_min_severity=RESOURCE_DETAIL_MIN_SEVERITY,
        alert_min_severity=ALERT_MIN_SEVERITY,
    )
    return {
        "process": process,
        "simulator": summary.as_dict(),
        "minimum": minimum.as_dict(),
        "request_ratio": summary.counts.total / minimum.total,
    }


async def measure_pydo(plan: Plan, team: Scenario, size: TeamSize) -> dict[str, Any]:
    """Collect the team's second scan with the pydo script under the raised limits."""
    token = generate_token()
    limits = plan.raised.limits
    async with serve_team(
        team,
        latency_s=plan.latency_s,
        limits=limits,
        token=token,
        scans_before=MEASURED_SCAN_NUMBER - 1,
    ) as (simulator, recorder):
        with tempfile.TemporaryDirectory(prefix="cspm-bench-pydo-") as name:
            process = await run_process(
                "pydo_baseline.py",
                ["--api-url", simulator.url, "--initial-interval-s", str(plan.poll_interval_s)],
                environment={TOKEN_VARIABLE: token},
                directory=Path(name),
            )
        summary = summarize(recorder.requests, limits)
    minimum = minimum_requests(
        team,
        MEASURED_SCAN_NUMBER,
        resource_detail_min_severity=RESOURCE_DETAIL_MIN_SEVERITY,
        alert_min_severity=ALERT_MIN_SEVERITY,
    ).without_settings()
    return {
        "size": size.name,
        "process": process,
        "simulator": summary.as_dict(),
        "minimum": minimum.as_dict(),
    }


async def measure_daemon(plan: Plan, team: Scenario) -> dict[str, Any]:
    """Run the daemon on SQLite for `daemon_cycles` cycles of `team` under the raised limits."""
    token = generate_token()
    limits = plan.raised.limits
    async with blank_database("sqlite", plan.postgres_url) as url:
        with tempfile.TemporaryDirectory(prefix="cspm-bench-daemon-") as name:
            directory = Path(name)
            # The shortest interval the configuration takes, so the cycles follow each other.
            config = write_config(
                directory,
                database_url=url,
                initial_poll_interval_s=plan.poll_interval_s,
                interval_s=1,
            )
            async with serve_team(team, latency_s=plan.latency_s, limits=limits, token=token) as (
                simulator,
                _,
            ):
                return await run_process(
                    "daemon_memory.py",
                    [
                        "--config",
                        str(config),
                        "--cycles",
                        str(plan.daemon_cycles),
                        *_client_arguments(plan, limits),
                    ],
                    environment={TOKEN_VARIABLE: token, "CSPM_WATCH_API_URL": simulator.url},
                    directory=directory,
                )
