"""Prometheus metrics of the service, registered in prometheus_client's default registry.

Counters and the cycle-duration histogram change in this process as cycles end and API
responses arrive. The gauges that describe stored state (open findings, last success, the
outbox) are read from the database by `refresh_stored_state` when /metrics is scraped, so every
replica that shares one PostgreSQL database reports the same values for them. The delivery
counters live in `service.notifiers.metrics`, beside the dispatcher that counts them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, Info
from prometheus_client import generate_latest as _generate_latest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service import __version__
from service.diffing import StateStatus
from service.digitalocean.models import Severity
from service.digitalocean.transport import ResponseHook
from service.scanning.cycle import CycleResult, CycleStatus
from service.storage.deliveries import DeliveryStatus
from service.storage.tables import deliveries_table, finding_states_table
from service.storage.targets import target_statuses

# A cycle polls for up to poll.timeout_s (30 minutes by default), so the buckets reach past an
# hour; a cycle skipped because another process holds the lease ends in well under a second.
CYCLE_DURATION_BUCKETS_S = (0.5, 1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)

# The outbox statuses that the outbox gauge reports. Sent deliveries are left out because the
# sent counter already counts them and their rows are deleted by retention.
OUTBOX_GAUGE_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.SENDING, DeliveryStatus.FAILED)

BUILD_INFO = Info("cspm_watch_build", "Version of the running cspm-watch.")
BUILD_INFO.info({"version": __version__})

SCAN_CYCLES = Counter(
    "cspm_watch_scan_cycles_total",
    "Scan cycles that ended, by target and cycle status (completed, skipped, scan_failed, "
    "timed_out, incomplete, error).",
    ["target", "status"],
)
CYCLE_DURATION = Histogram(
    "cspm_watch_scan_cycle_duration_seconds",
    "Duration of scan cycles, from claiming the lease to the summary line.",
    ["target"],
    buckets=CYCLE_DURATION_BUCKETS_S,
)
LAST_CYCLE_END = Gauge(
    "cspm_watch_last_scan_cycle_end_timestamp_seconds",
    "Unix time at which this process last ended a scan cycle of the target, whatever its status.",
    ["target"],
)
API_REQUESTS = Counter(
    "cspm_watch_api_requests_total",
    "Responses from the DigitalOcean API, by target, operation and HTTP status. Requests that "
    "got no response (timeouts, connection errors) are not counted.",
    ["target", "operation", "status"],
)
RATE_BUDGET_REMAINING = Gauge(
    "cspm_watch_api_rate_budget_remaining",
    "Requests left in the token's hourly budget, from the last response's ratelimit-remaining "
    "header.",
    ["target"],
)
OPEN_FINDINGS = Gauge(
    "cspm_watch_open_findings",
    "Open finding states (one per rule and affected resource), by target and severity, read "
    "from the database at scrape time.",
    ["target", "severity"],
)
LAST_SUCCESS = Gauge(
    "cspm_watch_last_success_timestamp_seconds",
    "Unix time of the target's last successful scan cycle (by any process sharing the "
    "database), read at scrape time; absent before the first success.",
    ["target"],
)
CONSECUTIVE_FAILURES = Gauge(
    "cspm_watch_consecutive_failed_cycles",
    "Scan cycles of the target that failed in a row since its last success, read at scrape time.",
    ["target"],
)
OUTBOX_DELIVERIES = Gauge(
    "cspm_watch_outbox_deliveries",
    "Deliveries in the outbox by notifier and status (pending, sending, failed), read at "
    "scrape time. Failed deliveries stay until retried or deleted by retention.",
    ["notifier", "status"],
)


def initialize_target_series(targets: Iterable[str]) -> None:
    """Create the per-target series at zero, so that rate() and increase() see their start."""
    for target in targets:
        for status in CycleStatus:
            SCAN_CYCLES.labels(target=target, status=status.value)
        CYCLE_DURATION.labels(target=target)


def record_cycle(result: CycleResult, *, ended_at_s: float) -> None:
    """Count one ended cycle, its duration and when it ended (`ended_at_s` in Unix seconds)."""
    SCAN_CYCLES.labels(target=result.target, status=result.status.value).inc()
    CYCLE_DURATION.labels(target=result.target).observe(result.duration_s)
    LAST_CYCLE_END.labels(target=result.target).set(ended_at_s)


def api_response_recorder(target: str) -> ResponseHook:
    """Return the `on_response` hook of the target's API client, which counts each response
    and keeps the hourly budget that DigitalOcean reported last."""

    def record(operation: str, status: int, _elapsed_s: float, remaining: int | None) -> None:
        API_REQUESTS.labels(target=target, operation=operation, status=str(status)).inc()
        if remaining is not None:
            RATE_BUDGET_REMAINING.labels(target=target).set(remaining)

    return record


async def refresh_stored_state(session: AsyncSession, targets: Sequence[str]) -> None:
    """Set the gauges that describe stored state from the database, for the configured targets.

    Every configured (target, severity) pair and every known (notifier, status) pair is set,
    zero included, so that a count that drops to zero shows as 0 instead of its last value.
    """
    await _refresh_open_findings(session, targets)
    await _refresh_target_status(session, targets)
    await _refresh_outbox(session)


async def _refresh_open_findings(session: AsyncSession, targets: Sequence[str]) -> None:
    states = finding_states_table
    rows = await session.execute(
        select(states.c.target, states.c.severity, func.count())
        .where(states.c.status == StateStatus.OPEN.value)
        .group_by(states.c.target, states.c.severity)
    )
    counts = {(target, severity): count for target, severity, count in rows.tuples()}
    for target in targets:
        for severity in Severity:
            count = counts.get((target, severity.value), 0)
            OPEN_FINDINGS.labels(target=target, severity=severity.value).set(count)


async def _refresh_target_status(session: AsyncSession, targets: Sequence[str]) -> None:
    configured = set(targets)
    for record in await target_statuses(session):
        if record.target not in configured:
            continue
        CONSECUTIVE_FAILURES.labels(target=record.target).set(record.consecutive_failures)
        if record.last_success_at is not None:
            LAST_SUCCESS.labels(target=record.target).set(record.last_success_at.timestamp())


async def _refresh_outbox(session: AsyncSession) -> None:
    deliveries = deliveries_table
    rows = await session.execute(
        select(deliveries.c.notifier, deliveries.c.status, func.count()).group_by(
            deliveries.c.notifier, deliveries.c.status
        )
    )
    counts = {(notifier, status): count for notifier, status, count in rows.tuples()}
    notifiers = {notifier for notifier, _ in counts}
    # Series seen at an earlier scrape drop to zero when their rows are gone.
    notifiers.update(_labels_of(OUTBOX_DELIVERIES, "notifier"))
    for notifier in notifiers:
        for status in OUTBOX_GAUGE_STATUSES:
            count = counts.get((notifier, status.value), 0)
            OUTBOX_DELIVERIES.labels(notifier=notifier, status=status.value).set(count)


def _labels_of(gauge: Gauge, label: str) -> set[str]:
    values: set[str] = set()
    for metric in gauge.collect():
        for sample in metric.samples:
            values.add(sample.labels[label])
    return values


def render_latest() -> tuple[bytes, str]:
    """Return the default registry in the Prometheus text format, and its content type."""
    return _generate_latest(REGISTRY), CONTENT_TYPE_LATEST
