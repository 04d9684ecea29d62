"""Benchmark: store and diff one large scan against a long history, on SQLite and PostgreSQL.

For each database the script builds a history of `--history` scans (by default 300 findings
and 50,000 affected resources each) through the same functions the cycle uses. Then it runs
one more cycle in a fresh process and reports the time of each step and that process's peak
memory. The peak is the maximum resident set size, so it includes the interpreter and the
scan held in memory. Each scan drops a few resources per finding and adds new ones, some severities
change and some rule-level findings come and go, so the diff has work of every kind.

    .venv/bin/python benchmarks/storage_diff.py                 # both databases
    .venv/bin/python benchmarks/storage_diff.py --database sqlite --history 10

PostgreSQL comes from --postgres-url or CSPM_WATCH_TEST_POSTGRES_URL; the script creates a
schema of its own there and drops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from service.diffing import CollectedFinding, CollectedScan, compute_diff
from service.digitalocean.models import (
    AffectedResource,
    Finding,
    MitigationStep,
    ScanStatus,
    Severity,
)
from service.storage import (
    NewDelivery,
    apply_diff,
    create_engine,
    create_sessionmaker,
    enqueue_deliveries,
    load_finding_states,
    record_scan_started,
    store_scan_result,
    upgrade_database,
)

TARGET = "benchmark"
FIRST_SCAN_AT = datetime(2026, 1, 1, tzinfo=UTC)
SEVERITIES = [Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL]
PARAGRAPH = (
    "The resource accepts traffic from any address on every port because no firewall is "
    "attached to it. Attackers scan the whole address space within minutes of a resource "
    "appearing, so an exposed service is found and probed long before anyone notices. "
)


@dataclass(frozen=True)
class Shape:
    """Size of every scan: findings, how many carry resources, resources each, churn."""

    findings: int
    resource_findings: int
    resources_per_finding: int
    churn_per_finding: int


def shape_from(arguments: argparse.Namespace) -> Shape:
    resource_findings = arguments.findings * 5 // 6
    return Shape(
        findings=arguments.findings,
        resource_findings=resource_findings,
        resources_per_finding=arguments.resources // resource_findings,
        churn_per_finding=arguments.churn,
    )


def build_scan(index: int, shape: Shape) -> CollectedScan:
    """Build scan number `index` of the history (0 is the first)."""
    return CollectedScan(
        target=TARGET,
        scan_id=f"scan-{index:04d}",
        status=ScanStatus.COMPLETED,
        complete=True,
        findings=list(_findings_of_scan(index, shape)),
    )


def _findings_of_scan(index: int, shape: Shape) -> Iterator[CollectedFinding]:
    for number in range(shape.findings):
        with_resources = number < shape.resource_findings
        # A seventh of the rule-level findings is missing from each scan, in turn.
        if not with_resources and (index + number) % 7 == 0:
            continue
        resources = _resources(index, number, shape) if with_resources else None
        yield CollectedFinding(_finding(index, number, len(resources or ())), resources)


def _finding(index: int, number: int, resources_count: int) -> Finding:
    severity_rank = number % 4
    # One finding in 25 changes severity with every scan.
    if number % 25 == 0:
        severity_rank = (number + index) % 4
    return Finding(
        rule_uuid=str(uuid.UUID(int=number + 1)),
        name=f"Rule {number}: droplet without a firewall",
        severity=SEVERITIES[severity_rank],
        details=PARAGRAPH,
        found_at=FIRST_SCAN_AT,
        business_impact=PARAGRAPH,
        technical_details=PARAGRAPH,
        mitigation_steps=(
            MitigationStep(step=1, title="Create a firewall", description=PARAGRAPH),
            MitigationStep(step=2, title="Attach it to the droplet", description=PARAGRAPH),
        ),
        affected_resources_count=resources_count or None,
    )


def _resources(index: int, number: int, shape: Shape) -> list[AffectedResource]:
    first = number * 10_000_000 + index * shape.churn_per_finding
    return [
        AffectedResource(urn=f"do:droplet:{n}", name=f"web-{n}", type="Droplet")
        for n in range(first, first + shape.resources_per_finding)
    ]


async def run_cycle(sessions: Any, scan: CollectedScan, seen_at: datetime) -> dict[str, float]:
    """Store, diff and enqueue one scan in one transaction; return seconds per step."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    async with sessions.begin() as session:
        record = await record_scan_started(
            session, target=TARGET, scan_id=scan.scan_id, requested_at=seen_at
        )
        await store_scan_result(session, record.id, scan, collected_at=seen_at)
        timings["store_s"] = time.perf_counter() - started

        mark = time.perf_counter()
        states = await load_finding_states(session, TARGET)
        timings["load_states_s"] = time.perf_counter() - mark
        timings["states"] = len(states)

        mark = time.perf_counter()
        diff = compute_diff(states, scan)
        timings["diff_s"] = time.perf_counter() - mark
        timings.update({f"{kind.value}": count for kind, count in diff.counts().items()})

        mark = time.perf_counter()
        await apply_diff(session, diff, scan_row_id=record.id, seen_at=seen_at)
        await enqueue_deliveries(session, [_summary_delivery(scan)], created_at=seen_at)
        timings["apply_s"] = time.perf_counter() - mark
        mark = time.perf_counter()
    timings["commit_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - started
    return timings


def _summary_delivery(scan: CollectedScan) -> NewDelivery:
    return NewDelivery(
        target=TARGET,
        notifier="console",
        kind="findings",
        dedupe_key=f"{scan.scan_id}:findings",
        payload=json.dumps({"scan_id": scan.scan_id}),
        webhook_id=f"msg_{scan.scan_id}",
    )


async def build_history(url: str, shape: Shape, history: int) -> float:
    """Migrate the database and store `history` scans; return the seconds it took."""
    await upgrade_database(url)
    engine = create_engine(url)
    sessions = create_sessionmaker(engine)
    started = time.perf_counter()
    try:
        for index in range(history):
            await run_cycle(sessions, build_scan(index, shape), _seen_at(index))
            if (index + 1) % 10 == 0:
                elapsed = time.perf_counter() - started
                print(f"  {index + 1}/{history} scans stored, {elapsed:.0f} s", flush=True)
    finally:
        await engine.dispose()
    return time.perf_counter() - started


async def measure_one_cycle(url: str, shape: Shape, index: int) -> dict[str, float]:
    """Run the measured cycle; called in a fresh process so its peak memory is its own."""
    baseline_mb = _peak_rss_mb()
    scan = build_scan(index, shape)
    engine = create_engine(url)
    try:
        timings = await run_cycle(create_sessionmaker(engine), scan, _seen_at(index))
    finally:
        await engine.dispose()
    return {**timings, "rss_after_imports_mb": baseline_mb, "peak_rss_mb": _peak_rss_mb()}


def _seen_at(index: int) -> datetime:
    return FIRST_SCAN_AT + timedelta(hours=6 * index)


def _peak_rss_mb() -> float:
    """Return this process's peak resident set size in MB.

    Linux's VmHWM starts afresh at exec. getrusage's ru_maxrss does not: a child started
    with fork and exec reports the parent's peak until it exceeds it.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@asynccontextmanager
async def blank_database(kind: str, postgres_url: str | None) -> AsyncIterator[str]:
    """Yield the URL of an empty database: a temporary SQLite file or a new schema."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="cspm-bench-") as directory:
            yield f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}"
        return
    if not postgres_url:
        raise SystemExit("PostgreSQL needs --postgres-url or CSPM_WATCH_TEST_POSTGRES_URL")
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url, poolclass=NullPool)
    async with admin.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        async with admin.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


async def benchmark(kind: str, arguments: argparse.Namespace) -> dict[str, Any]:
    shape = shape_from(arguments)
    async with blank_database(kind, arguments.postgres_url) as url:
        print(f"{kind}: building a history of {arguments.history} scans", flush=True)
        history_s = await build_history(url, shape, arguments.history)
        measured = await _measure_in_subprocess(url, arguments)
    return {"database": kind, "history_s": history_s, **measured}


async def _measure_in_subprocess(url: str, arguments: argparse.Namespace) -> dict[str, Any]:
    command = [
        sys.executable,
        __file__,
        "--measure-url",
        url,
        "--findings",
        str(arguments.findings),
        "--resources",
        str(arguments.resources),
        "--churn",
        str(arguments.churn),
        "--history",
        str(arguments.history),
    ]
    completed = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


def print_report(results: list[dict[str, Any]], arguments: argparse.Namespace) -> None:
    shape = shape_from(arguments)
    resources = shape.resource_findings * shape.resources_per_finding
    print()
    print(
        f"One scan of {arguments.findings} findings and {resources} affected resources, "
        f"stored and diffed after a history of {arguments.history} such scans:"
    )
    columns = [
        ("database", "database", "{}"),
        ("store_s", "store s", "{:.2f}"),
        ("load_states_s", "load states s", "{:.2f}"),
        ("diff_s", "diff s", "{:.2f}"),
        ("apply_s", "apply s", "{:.2f}"),
        ("commit_s", "commit s", "{:.2f}"),
        ("total_s", "total s", "{:.2f}"),
        ("peak_rss_mb", "peak RSS MB", "{:.0f}"),
        ("rss_after_imports_mb", "RSS after imports MB", "{:.0f}"),
        ("states", "states", "{:.0f}"),
        ("history_s", "history build s", "{:.0f}"),
    ]
    print(" | ".join(title for _, title, _ in columns))
    for result in results:
        print(" | ".join(fmt.format(result[key]) for key, _, fmt in columns))
    kinds = ("new", "reopened", "escalated", "resolved", "unchanged")
    for result in results:
        counts = ", ".join(f"{kind} {int(result[kind])}" for kind in kinds)
        print(f"{result['database']} diff: {counts}")


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("CSPM_WATCH_TEST_POSTGRES_URL"),
        help="PostgreSQL URL (default: CSPM_WATCH_TEST_POSTGRES_URL)",
    )
    parser.add_argument("--findings", type=int, default=300, help="findings per scan")
    parser.add_argument("--resources", type=int, default=50_000, help="resources per scan")
    parser.add_argument("--history", type=int, default=100, help="scans stored before")
    parser.add_argument(
        "--churn", type=int, default=2, help="resources replaced per finding and scan"
    )
    parser.add_argument("--measure-url", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    if arguments.measure_url:
        shape = shape_from(arguments)
        measured = asyncio.run(measure_one_cycle(arguments.measure_url, shape, arguments.history))
        print(json.dumps(measured))
        return
    kinds = ["sqlite", "postgresql"] if arguments.database == "both" else [arguments.database]
    results = [asyncio.run(benchmark(kind, arguments)) for kind in kinds]
    print_report(results, arguments)


if __name__ == "__main__":
    main()
