"""The daemon's HTTP endpoints: /healthz, /readyz and /metrics.

- `/healthz` answers 200 whenever the process and its event loop can answer at all, so a
  liveness probe restarts only a process that hangs.
- `/readyz` answers 200 when the database answers a `SELECT 1` within
  `DATABASE_CHECK_TIMEOUT_S`, the scheduler runs with a job for every target, and no target is
  stale (see `stale_after`); 503 otherwise. The body lists each check and why it failed.
- `/metrics` serves the Prometheus text format, after reading the stored-state gauges from the
  database (`service.metrics.refresh_stored_state`). When the database does not answer, it
  serves the last values read.

Run as `python -m service.web`, the module is the container's health check: it requests
`/healthz` on the port of CSPM_WATCH_LISTEN (8080 without it) and exits 0 or 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from apscheduler.schedulers.base import BaseScheduler
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service import metrics
from service.config import Settings, TargetSettings
from service.logging import redact_text
from service.scheduler import build_trigger, target_job_id
from service.storage.targets import target_statuses

log = structlog.get_logger(__name__)

# Kubernetes probes default to a 1 s timeout; the manifests raise it to 5 s, so a check that
# gives up after 2 s still answers in time.
DATABASE_CHECK_TIMEOUT_S = 2.0
# Reading the stored-state gauges for /metrics runs three aggregate queries.
METRICS_REFRESH_TIMEOUT_S = 5.0
# The health check of the container image (`python -m service.web`).
HEALTHCHECK_TIMEOUT_S = 3.0
DEFAULT_LISTEN = "0.0.0.0:8080"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one readiness check: passed or not, and a sentence saying why not."""

    ok: bool
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail} if self.detail else {"ok": self.ok}


@dataclass(frozen=True, slots=True)
class Readiness:
    """The readiness checks by name; ready only when all of them passed."""

    checks: dict[str, CheckResult]

    @property
    def ready(self) -> bool:
        return all(check.ok for check in self.checks.values())

    def failures(self) -> dict[str, str]:
        return {name: check.detail for name, check in self.checks.items() if not check.ok}


@dataclass(slots=True)
class WebState:
    """What the endpoints read: the settings, the database, the scheduler and the clock.

    `started_at` is when the daemon started; a target without a success since then is judged
    from that moment (see `stale_after`).
    """

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    scheduler: BaseScheduler | None
    started_at: datetime
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    # The last readiness failures and metrics-refresh error, to log only changes.
    last_failures: dict[str, str] | None = None
    last_refresh_error: str | None = field(default=None)


STATE_KEY = web.AppKey("state", WebState)


def build_app(state: WebState) -> web.Application:
    """Return the aiohttp application that serves the three endpoints."""
    app = web.Application()
    app[STATE_KEY] = state
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app


@contextlib.asynccontextmanager
async def serve_web(state: WebState, host: str, port: int) -> AsyncIterator[int]:
    """Serve the endpoints on host:port until the block ends; yield the bound port.

    Port 0 binds a free port, which the yielded value tells. Raises OSError when the address
    cannot be bound.
    """
    runner = web.AppRunner(build_app(state), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = _bound_port(runner, port)
        log.info("web_server_started", host=host, port=bound_port)
        yield bound_port
    finally:
        await runner.cleanup()
        log.info("web_server_stopped")


def _bound_port(runner: web.AppRunner, requested_port: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return requested_port


# ---------------------------------------------------------------------------------------------
# Handlers


async def _healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    readiness = await check_readiness(state)
    _log_readiness_change(state, readiness)
    body = {
        "ready": readiness.ready,
        "checks": {name: check.as_json() for name, check in readiness.checks.items()},
    }
    return web.json_response(body, status=200 if readiness.ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    await _refresh_metrics(state)
    body, content_type = metrics.render_latest()
    # aiohttp's `content_type` argument rejects parameters such as the format version.
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _refresh_metrics(state: WebState) -> None:
    targets = [target.name for target in state.settings.targets]
    error: str | None = None
    try:
        async with asyncio.timeout(METRICS_REFRESH_TIMEOUT_S), state.sessions() as session:
            await metrics.refresh_stored_state(session, targets)
    except TimeoutError:
        error = f"the database did not answer within {METRICS_REFRESH_TIMEOUT_S:g} s"
    except (SQLAlchemyError, OSError) as caught:
        error = _describe_error(caught)
    if error != state.last_refresh_error:
        if error is None:
            log.info("metrics_refresh_recovered")
        else:
            log.warning("metrics_refresh_failed", error=error, serving="the last values read")
    state.last_refresh_error = error


def _log_readiness_change(state: WebState, readiness: Readiness) -> None:
    failures = readiness.failures()
    if failures == state.last_failures:
        return
    if failures:
        log.warning("readiness_lost", failures=failures)
    elif state.last_failures is not None:
        log.info("readiness_restored")
    state.last_failures = failures


# ---------------------------------------------------------------------------------------------
# Readiness checks


async def check_readiness(state: WebState) -> Readiness:
    """Run the three readiness checks: database, scheduler and target staleness."""
    database = await check_database(state.engine)
    scheduler = check_scheduler(state.scheduler, state.settings)
    if database.ok:
        targets = await check_targets(state)
    else:
        targets = CheckResult(False, "not checked, because the database does not answer")
    return Readiness({"database": database, "scheduler": scheduler, "targets": targets})


async def check_database(engine: AsyncEngine) -> CheckResult:
    """Check that the database answers `SELECT 1` within `DATABASE_CHECK_TIMEOUT_S`.

    For SQLite, also check that the database file still exists: a connection that is already
    open keeps reading a deleted file, so `SELECT 1` alone would not notice a lost volume.
    """
    missing = _missing_sqlite_file(engine)
    if missing is not None:
        return CheckResult(False, f"the SQLite database file {missing} does not exist")
    try:
        async with asyncio.timeout(DATABASE_CHECK_TIMEOUT_S), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except TimeoutError:
        return CheckResult(
            False, f"the database did not answer within {DATABASE_CHECK_TIMEOUT_S:g} s"
        )
    except (SQLAlchemyError, OSError) as error:
        return CheckResult(False, _describe_error(error))
    return CheckResult(True)


def _missing_sqlite_file(engine: AsyncEngine) -> Path | None:
    if engine.dialect.name != "sqlite" or not engine.url.database:
        return None
    path = Path(engine.url.database).expanduser()
    return None if path.is_file() else path


def check_scheduler(scheduler: BaseScheduler | None, settings: Settings) -> CheckResult:
    """Check that the scheduler runs and holds the job of every target."""
    if scheduler is None or not scheduler.running:
        return CheckResult(False, "the scheduler is not running")
    missing = [
        target.name
        for target in settings.targets
        if scheduler.get_job(target_job_id(target.name)) is None
    ]
    if missing:
        return CheckResult(False, f"no scheduled job for target(s) {', '.join(missing)}")
    return CheckResult(True)


async def check_targets(state: WebState) -> CheckResult:
    """Check that no target is stale: see `stale_after`."""
    try:
        async with asyncio.timeout(DATABASE_CHECK_TIMEOUT_S), state.sessions() as session:
            records = {record.target: record for record in await target_statuses(session)}
    except TimeoutError:
        return CheckResult(
            False, f"the database did not answer within {DATABASE_CHECK_TIMEOUT_S:g} s"
        )
    except (SQLAlchemyError, OSError) as error:
        return CheckResult(False, _describe_error(error))

    now = state.now()
    stale: list[str] = []
    for target in state.settings.targets:
        record = records.get(target.name)
        last_success_at = record.last_success_at if record is not None else None
        reference_at = state.started_at
        if last_success_at is not None and last_success_at > reference_at:
            reference_at = last_success_at
        deadline_at = stale_after(target, reference_at)
        if now > deadline_at:
            since = "no success" if last_success_at is None else "last success"
            stale.append(f"{target.name} ({since} since {reference_at.isoformat()})")
    if stale:
        return CheckResult(
            False, "two scheduled cycles passed without a success: " + "; ".join(stale)
        )
    return CheckResult(True)


def stale_after(target: TargetSettings, reference_at: datetime) -> datetime:
    """Return when `target` counts as stale if it has not succeeded since `reference_at`.

    That is the second scheduled run after `reference_at`, plus `poll.timeout_s` for that run to
    finish. For an `interval_s` schedule this is twice the interval (plus the poll timeout). For
    a cron schedule the two runs are the trigger's next two fire times, so a weekday schedule is
    not stale over a weekend.
    """
    grace = timedelta(seconds=target.poll.timeout_s)
    schedule = target.schedule
    if schedule.interval_s is not None:
        return reference_at + 2 * timedelta(seconds=schedule.interval_s) + grace
    trigger = build_trigger(schedule)
    first_at = trigger.get_next_fire_time(None, reference_at)
    second_at = None if first_at is None else trigger.get_next_fire_time(first_at, first_at)
    if second_at is None:
        # A cron expression always has a next time; this keeps the type checker honest.
        return datetime.max.replace(tzinfo=UTC)
    return second_at.astimezone(UTC) + grace


def _describe_error(error: BaseException) -> str:
    # SQLAlchemy's text can include the statement; the first line names the failure without it.
    cause = getattr(error, "orig", None) or error
    first_line = (str(cause) or type(cause).__name__).splitlines()[0]
    return redact_text(f"{type(cause).__name__}: {first_line}")


# ---------------------------------------------------------------------------------------------
# Container health check


def healthcheck_url(environ: Mapping[str, str]) -> str:
    """Return the /healthz URL on the loopback address and the port of CSPM_WATCH_LISTEN."""
    listen = environ.get("CSPM_WATCH_LISTEN", DEFAULT_LISTEN)
    port = listen.rpartition(":")[2]
    return f"http://127.0.0.1:{port}/healthz"


def run_healthcheck() -> int:
    """Request /healthz and return 0 when it answers 200, 1 otherwise (Docker's convention)."""
    url = healthcheck_url(os.environ)
    # The URL is built above: http on the loopback address, never a file:// or other scheme.
    request = urllib.request.Request(url)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=HEALTHCHECK_TIMEOUT_S) as response:  # noqa: S310
            status = int(response.status)
    except (urllib.error.URLError, OSError) as error:
        print(f"health check of {url} failed: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"url": url, "status": status}))
    return 0 if status == 200 else 1


if __name__ == "__main__":
    raise SystemExit(run_healthcheck())
