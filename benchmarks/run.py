"""Measure the service's scan cycle against the simulator, side by side with a pydo script.

`make bench` runs this script. For each team size and database it runs one cycle of the
service (trigger, poll, collect, store, diff, decide, enqueue) in a process of its own. The
simulator runs in this process, adds a fixed latency to every request and enforces per-token
rate limits. It does so twice: with DigitalOcean's limits, which bind for the large team, and
with limits raised so far that they never bind. With the raised limits a pydo script collects
the same scan for comparison, and the daemon runs 20 cycles of the medium team so that its
memory can be watched. Results go to benchmarks/results.md and benchmarks/results.json; see
docs/benchmarks.md for what each figure means.

    .venv/bin/python benchmarks/run.py               # everything, about 9 minutes on 2 cores
    .venv/bin/python benchmarks/run.py --sizes small --databases sqlite --daemon-cycles 3
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from harness import write_json
from machine import describe_machine, postgres_problem, postgres_version
from measure import (
    ALERT_MIN_SEVERITY,
    RESOURCE_DETAIL_MIN_SEVERITY,
    LimitsMode,
    Plan,
    measure_cycle,
    measure_daemon,
    measure_pydo,
)
from report import evaluate_targets, render_markdown
from team import (
    MEASURED_SCAN_NUMBER,
    SIZES,
    TeamSize,
    alternating_team,
    build_team,
    scan_size,
)

from service.digitalocean.ratelimit import RateLimits
from service.logging import configure_logging
from service.simulator import Scenario

BENCH_DIRECTORY = Path(__file__).resolve().parent
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class Progress:
    """Prints one line per step with the time since the benchmark started."""

    def __init__(self) -> None:
        self.started_s = time.monotonic()

    def say(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started_s:6.1f} s] {message}", flush=True)


async def run_benchmark(plan: Plan, progress: Progress) -> dict[str, Any]:
    """Run every measurement of `plan` and return the results, ready to be written.

    The runs under the raised limits come first because they are quick. The runs under
    DigitalOcean's limits come last, because there the large team waits for the minute window.
    """
    teams = {size.name: build_team(size) for size in plan.sizes}
    results: dict[str, Any] = {"teams": _team_sizes(teams)}
    results["cycles"] = await _measure_cycles(plan, teams, plan.raised, progress)
    results["pydo"] = []
    if plan.pydo:
        results["pydo"] = [await _measure_pydo(plan, teams, size, progress) for size in plan.sizes]
    results["daemon"] = await _measure_daemon(plan, progress)
    if plan.rate_bound:
        results["cycles"] += await _measure_cycles(plan, teams, plan.digitalocean, progress)
    return results


def _team_sizes(teams: dict[str, Scenario]) -> dict[str, Any]:
    sizes: dict[str, Any] = {}
    for name, team in teams.items():
        first = scan_size(team, 1)
        measured = scan_size(team, MEASURED_SCAN_NUMBER)
        sizes[name] = {
            "first_scan": {"findings": first[0], "affected_resources": first[1]},
            "measured_scan": {"findings": measured[0], "affected_resources": measured[1]},
        }
    return sizes


async def _measure_cycles(
    plan: Plan, teams: dict[str, Scenario], mode: LimitsMode, progress: Progress
) -> list[dict[str, Any]]:
    records = []
    for size in plan.sizes:
        for database in plan.databases:
            progress.say(f"cycle: {size.name} team, {database}, {mode.name} limits")
            record = await measure_cycle(plan, teams[size.name], size, database, mode)
            records.append(record)
            progress.say(_describe_cycle(record))
    return records


async def _measure_pydo(
    plan: Plan, teams: dict[str, Scenario], size: TeamSize, progress: Progress
) -> dict[str, Any]:
    progress.say(f"pydo baseline: {size.name} team, {plan.raised.name} limits")
    record = await measure_pydo(plan, teams[size.name], size)
    progress.say(
        f"  {record['simulator']['counts']['total']} requests, "
        f"collection {record['simulator']['collection_s']:.2f} s"
    )
    return record


async def _measure_daemon(plan: Plan, progress: Progress) -> dict[str, Any] | None:
    if plan.daemon_cycles <= 0:
        return None
    progress.say(f"daemon: {plan.daemon_cycles} cycles of the medium team on SQLite")
    team = alternating_team(build_team(SIZES["medium"]), plan.daemon_cycles)
    record = await measure_daemon(plan, team)
    readings = record["rss_after_cycle_mb"]
    progress.say(f"  RSS after cycle 1: {readings[0]:.0f} MB, after the last {readings[-1]:.0f} MB")
    return record


def _describe_cycle(record: dict[str, Any]) -> str:
    process, simulator = record["process"], record["simulator"]
    share = simulator["rate_share"]
    share_text = f", rate share {share:.0%}" if share is not None else ""
    return (
        f"  {simulator['counts']['total']} requests (minimum {record['minimum']['total']}), "
        f"{simulator['rate_limited']} answered 429, cycle {process['duration_s']:.2f} s, "
        f"{process['after_last_response_s']:.2f} s after the last response{share_text}, "
        f"peak RSS {process['peak_rss_mb']:.0f} MB"
    )


def parse_arguments(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small,medium,large", help="team sizes, comma-separated")
    parser.add_argument(
        "--databases", default="sqlite,postgresql", help="databases, comma-separated"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("CSPM_WATCH_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL,
        help="PostgreSQL URL; each run uses a new schema there and drops it afterwards",
    )
    parser.add_argument("--latency-s", type=float, default=0.04, help="simulated latency")
    parser.add_argument(
        "--poll-interval-s", type=float, default=1.0, help="first poll interval of both clients"
    )
    parser.add_argument("--max-concurrency", type=int, default=8, help="service's connections")
    parser.add_argument(
        "--raised-factor", type=int, default=100, help="limits factor where they must not bind"
    )
    parser.add_argument(
        "--rate-factor", type=int, default=1, help="factor on DigitalOcean's limits"
    )
    parser.add_argument("--daemon-cycles", type=int, default=20, help="0 skips the daemon")
    parser.add_argument(
        "--no-rate-bound", action="store_true", help="skip the runs under DigitalOcean's limits"
    )
    parser.add_argument("--no-pydo", action="store_true", help="skip the pydo baseline")
    parser.add_argument(
        "--profile-directory",
        type=Path,
        help="write a cProfile file of every measured cycle process here",
    )
    parser.add_argument(
        "--output-directory", type=Path, default=BENCH_DIRECTORY, help="where results go"
    )
    return parser.parse_args(argv)


def plan_from(arguments: argparse.Namespace) -> Plan:
    sizes = tuple(SIZES[name] for name in _names(arguments.sizes, SIZES, "--sizes"))
    databases = _names(arguments.databases, ("sqlite", "postgresql"), "--databases")
    return Plan(
        sizes=sizes,
        databases=tuple(databases),
        postgres_url=arguments.postgres_url,
        latency_s=arguments.latency_s,
        poll_interval_s=arguments.poll_interval_s,
        max_concurrency=arguments.max_concurrency,
        raised=LimitsMode("raised", arguments.raised_factor),
        digitalocean=LimitsMode("digitalocean", arguments.rate_factor),
        daemon_cycles=arguments.daemon_cycles,
        rate_bound=not arguments.no_rate_bound,
        pydo=not arguments.no_pydo,
        output_directory=arguments.output_directory,
        profile_directory=arguments.profile_directory,
    )


def _names(text: str, known: Iterable[str], option: str) -> list[str]:
    known = list(known)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise SystemExit(
            f"invalid {option} {text!r}: use a comma-separated list of {', '.join(known)}"
        )
    return names


async def main_async(plan: Plan, command: str) -> None:
    progress = Progress()
    machine = describe_machine()
    if "postgresql" in plan.databases:
        problem = await postgres_problem(plan.postgres_url)
        if problem is not None:
            progress.say(f"PostgreSQL left out: {problem}")
            plan = _without_postgres(plan)
        else:
            machine["postgresql"] = await postgres_version(plan.postgres_url)
    results = await run_benchmark(plan, progress)
    results.update(
        command=command,
        machine=machine,
        duration_s=time.monotonic() - progress.started_s,
        settings=_settings_record(plan),
    )
    results["targets"] = evaluate_targets(results)
    write_json(plan.output_directory / "results.json", results)
    markdown = render_markdown(results)
    (plan.output_directory / "results.md").write_text(markdown)
    print()
    print(markdown)
    progress.say(f"results written to {plan.output_directory}/results.md and results.json")


def _without_postgres(plan: Plan) -> Plan:
    databases = tuple(name for name in plan.databases if name != "postgresql")
    if not databases:
        raise SystemExit("PostgreSQL is not reachable and no other database was chosen")
    return dataclasses.replace(plan, databases=databases)


def _settings_record(plan: Plan) -> dict[str, Any]:
    return {
        "latency_s": plan.latency_s,
        "poll_initial_interval_s": plan.poll_interval_s,
        "max_concurrency": plan.max_concurrency,
        "client_margin_s": RateLimits().margin_s,
        "resource_detail_min_severity": RESOURCE_DETAIL_MIN_SEVERITY.value,
        "alert_min_severity": ALERT_MIN_SEVERITY.value,
        "limits": [plan.digitalocean.as_dict(), plan.raised.as_dict()],
        "databases": list(plan.databases),
        "sizes": [size.name for size in plan.sizes],
        "daemon_cycles": plan.daemon_cycles,
    }


def main() -> None:
    arguments = parse_arguments()
    # The simulator in this process logs each start and stop at DEBUG; progress lines suffice.
    configure_logging(level="WARNING", json=False)
    command = " ".join(["python", "benchmarks/run.py", *sys.argv[1:]])
    asyncio.run(main_async(plan_from(arguments), command))


if __name__ == "__main__":
    main()
