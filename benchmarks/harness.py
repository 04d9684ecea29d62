"""Helpers of the benchmark's measured processes: their configuration file, a runtime whose API
client keeps the simulator's rate limits, and readings of the process's own memory and CPU."""

from __future__ import annotations

import contextlib
import json
import resource
import textwrap
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.config import Settings
from service.digitalocean.client import SecurityClient
from service.digitalocean.ratelimit import RateLimits
from service.notifiers.dispatcher import Dispatcher
from service.notifiers.factory import build_notifiers
from service.runtime import Runtime
from service.storage import create_engine, create_sessionmaker, upgrade_database

TARGET = "bench"
TOKEN_VARIABLE = "CSPM_BENCH_TOKEN"  # noqa: S105 - a variable name, not a secret
# Operations that read the scan's findings and resources. A poll is a get_scan too, but every
# poll comes before the first findings page.
COLLECTION_OPERATIONS = frozenset({"get_scan", "list_affected_resources"})


def write_config(
    directory: Path,
    *,
    database_url: str,
    initial_poll_interval_s: float,
    interval_s: int = 3600,
) -> Path:
    """Write a one-target configuration with a console notifier and return its path.

    The API URL comes from CSPM_WATCH_API_URL and the token from CSPM_BENCH_TOKEN in the
    measured process's environment, because each simulator listens on a port of its own.
    """
    path = directory / "cspm-watch.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            database_url: {json.dumps(database_url)}
            log_level: INFO
            migrate_on_start: false
            targets:
              - name: {TARGET}
                token_env: {TOKEN_VARIABLE}
                schedule: {{interval_s: {interval_s}}}
                poll: {{initial_interval_s: {initial_poll_interval_s}, max_interval_s: 60}}
                resource_detail_min_severity: LOW
                alerts: {{min_severity: HIGH, on_first_scan: summary}}
            notifiers:
              stdout: {{type: console, min_severity: HIGH}}
            """
        )
    )
    return path


@dataclass(slots=True)
class ResponseClock:
    """Monotonic times of the client's responses, taken by its `on_response` hook."""

    responses: int = 0
    last_response_s: float | None = None
    last_collection_response_s: float | None = None
    statuses: dict[str, int] = field(default_factory=dict)

    def __call__(
        self, operation: str, status: int, elapsed_s: float, remaining: int | None
    ) -> None:
        # CLOCK_MONOTONIC is shared by every process on the host, so the parent can compare
        # these times with the simulator's.
        now_s = time.monotonic()
        self.responses += 1
        self.last_response_s = now_s
        if operation in COLLECTION_OPERATIONS:
            self.last_collection_response_s = now_s
        key = f"{operation} {status}"
        self.statuses[key] = self.statuses.get(key, 0) + 1


@contextlib.asynccontextmanager
async def open_benchmark_runtime(
    settings: Settings,
    *,
    rate_limits: RateLimits,
    max_concurrency: int,
    on_response: ResponseClock,
    migrate: bool,
) -> AsyncIterator[Runtime]:
    """Open the service's runtime with an API client that keeps `rate_limits`.

    NOTE: this repeats `service.runtime.open_runtime` except for the client, because the
    configuration has no key for the client's rate limits; keep the two in step.
    """
    if migrate:
        await upgrade_database(settings.database_url)
    engine = create_engine(settings.database_url)
    sessions = create_sessionmaker(engine)
    notifiers = build_notifiers(settings.notifiers)
    clients = {
        target.name: SecurityClient(
            target.token,
            api_url=str(settings.api_url_for(target)),
            rate_limits=rate_limits,
            max_concurrency=max_concurrency,
            on_response=on_response,
        )
        for target in settings.targets
    }
    runtime = Runtime(
        settings=settings,
        engine=engine,
        sessions=sessions,
        clients=clients,
        notifiers=notifiers,
        dispatcher=Dispatcher(sessions, notifiers),
    )
    try:
        for client in clients.values():
            await client.open()
        yield runtime
    finally:
        for client in clients.values():
            await client.close()
        for notifier in notifiers.values():
            await notifier.aclose()
        await engine.dispose()


def memory_mb(field_name: str) -> float:
    """Return a memory figure of this process in MB: VmRSS (now) or VmHWM (peak).

    Linux starts VmHWM afresh at exec; getrusage's ru_maxrss, the fallback elsewhere, may
    include the parent's peak in a child started with fork and exec.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def process_cpu_s() -> float:
    """Return the user and system CPU seconds this process has used since it started."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
