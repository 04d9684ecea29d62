"""One scan cycle of one target, as a list of named steps.

claim the lease -> resume or trigger -> poll -> collect -> store, diff, decide and enqueue in
one transaction -> release the lease -> log one summary line. Dispatching the enqueued
deliveries is the caller's step, so that `once` can dispatch after every target's cycle and the
daemon on its own schedule.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.alerting import (
    AlertPlan,
    AlertPolicy,
    FirstScanMode,
    Mute,
    decide_alerts,
    failure_batch,
)
from service.config import TargetSettings
from service.diffing import Diff, DiffKind, compute_diff
from service.digitalocean.client import SecurityClient
from service.digitalocean.errors import DigitalOceanError
from service.digitalocean.models import Scan, ScanStatus, Suppression
from service.errors import CspmWatchError
from service.notifiers.base import Notifier
from service.notifiers.content import AlertBatch
from service.notifiers.render import render_deliveries
from service.scanning.collect import Collection, collect_scan
from service.scanning.lease import DEFAULT_LEASE_TTL_S, LeaseLostError, hold_lease
from service.scanning.polling import PollResult, deadline_for, poll_until_terminal
from service.storage import (
    NewDelivery,
    ScanRecord,
    apply_diff,
    enqueue_deliveries,
    find_resumable_scan,
    find_uncollected_scan,
    load_finding_states,
    previous_completed_scan,
    record_alerts,
    record_scan_started,
    recorded_scan_ids,
    store_scan_result,
    update_scan_status,
)
from service.storage.targets import (
    TargetStatusRecord,
    mark_cycle_started,
    record_cycle_failure,
    record_cycle_success,
)

log = structlog.get_logger(__name__)

# A scan created by a cycle that died before recording it is adopted when DigitalOcean reports
# it created at most this long before that cycle started (allows for clock skew).
ADOPTION_CLOCK_SKEW = timedelta(minutes=2)
# After a create request whose outcome is unknown, the client adopts a listed scan created up
# to a minute before the request (CREATE_SCAN_CLOCK_SKEW_S). Scans this target recorded in
# this window are passed to it as known, so that it never adopts one of them as the new scan.
KNOWN_SCANS_WINDOW = timedelta(hours=1)
# Problems of an incomplete collection quoted in the cycle's reason and its log line.
REASON_PROBLEMS = 3


class CycleStatus(enum.Enum):
    """The outcome of a cycle. `succeeded` is True for COMPLETED and SKIPPED."""

    COMPLETED = "completed"
    SKIPPED = "skipped"  # another process holds the target's lease
    SCAN_FAILED = "scan_failed"  # FAILED, CSPM_NOT_ENABLED or SCAN_NOT_RUN
    TIMED_OUT = "timed_out"
    INCOMPLETE = "incomplete"  # the scan completed but its collection fell short
    ERROR = "error"

    @property
    def succeeded(self) -> bool:
        return self in (CycleStatus.COMPLETED, CycleStatus.SKIPPED)


@dataclass(slots=True)
class CycleResult:
    """The result of one cycle, for the summary line, the exit code and the metrics."""

    target: str
    status: CycleStatus
    scan_id: str | None = None
    scan_status: str | None = None
    reason: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    alerted: int = 0
    deliveries_enqueued: int = 0
    requests: int = 0
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class CycleEnvironment:
    """The dependencies of a cycle besides its target's settings."""

    sessions: async_sessionmaker[AsyncSession]
    client: SecurityClient
    notifiers: Mapping[str, Notifier]
    holder: str
    mutes: Sequence[Mute] = ()
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    lease_ttl_s: float = DEFAULT_LEASE_TTL_S
    # The start of the schedule slot of a scheduled cycle; None for `once`.
    slot_started_at: datetime | None = None


class CycleFailure(CspmWatchError):
    """A cycle step failed in a way that ends the cycle. The message names the step and why."""

    def __init__(self, status: CycleStatus, reason: str, scan: Scan | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.scan = scan


async def run_cycle(target: TargetSettings, env: CycleEnvironment) -> CycleResult:
    """Run one cycle of `target` and return its result; only cancellation propagates."""
    started_s = time.monotonic()
    requests_before = env.client.stats.total_requests
    structlog.contextvars.bind_contextvars(target=target.name)
    try:
        result = await _run_with_lease(target, env)
    except CycleFailure as failure:
        result = await _record_failure(target, env, failure)
    except (DigitalOceanError, SQLAlchemyError, CspmWatchError, LeaseLostError, OSError) as error:
        result = await _record_failure(
            target, env, CycleFailure(CycleStatus.ERROR, _describe_error(error))
        )
    finally:
        structlog.contextvars.unbind_contextvars("target")

    result.requests = env.client.stats.total_requests - requests_before
    result.duration_s = time.monotonic() - started_s
    _log_summary(result)
    return result


async def _run_with_lease(target: TargetSettings, env: CycleEnvironment) -> CycleResult:
    async with hold_lease(
        env.sessions, target.name, env.holder, now=env.now, ttl_s=env.lease_ttl_s
    ) as lease:
        if not lease.held:
            log.info("target_busy", reason="another process holds the target's lease")
            return CycleResult(
                target.name, CycleStatus.SKIPPED, reason="another process holds the lease"
            )
        if await slot_already_scanned(target, env):
            log.info("slot_already_scanned", slot_started_at=str(env.slot_started_at))
            return CycleResult(
                target.name, CycleStatus.SKIPPED, reason="this schedule slot was scanned"
            )
        record = await resume_or_trigger(target, env)
        structlog.contextvars.bind_contextvars(scan_id=record.scan_id)
        try:
            scan = await poll_scan(target, env, record)
            collection = await collect_scan(
                env.client,
                target.name,
                scan,
                resource_detail_min_severity=target.resource_detail_min_severity,
            )
            return await store_and_enqueue(target, env, record, scan, collection)
        finally:
            structlog.contextvars.unbind_contextvars("scan_id")


async def slot_already_scanned(target: TargetSettings, env: CycleEnvironment) -> bool:
    """Tell whether a scheduled cycle's slot already has a scan of the target.

    Replicas of the daemon fire at the same run times, and the lease alone lets a replica
    whose timer fires after another's cycle ended start a second scan. A cycle that died
    leaves its slot open, so that the next cycle finishes its scan.
    """
    if env.slot_started_at is None:
        return False
    async with env.sessions() as session:
        status = await session.get(TargetStatusRecord, target.name)
        if status is not None and status.cycle_started_at is not None:
            return False
        return bool(await recorded_scan_ids(session, target.name, env.slot_started_at))


async def resume_or_trigger(target: TargetSettings, env: CycleEnvironment) -> ScanRecord:
    """Return the target's running scan recorded within its deadline, or start a new one.

    A cycle that died after DigitalOcean created its scan but before recording it leaves a
    mark. The next cycle then adopts DigitalOcean's latest scan instead of starting a second
    one, if that scan was created after the dead cycle started and is still running or was
    created within `poll.timeout_s`. A recorded scan that completed but was never stored is
    resumed the same way.
    """
    now = env.now()
    async with env.sessions.begin() as session:
        start = await mark_cycle_started(session, target.name, now=now)
        since = now - timedelta(seconds=target.poll.timeout_s)
        resumable = await find_resumable_scan(session, target.name, since)
        if resumable is None and start.unfinished_since is not None:
            # The dead cycle may have seen its scan complete and died before storing it.
            resumable = await find_uncollected_scan(session, target.name, since)
        known_scan_ids = await recorded_scan_ids(session, target.name, now - KNOWN_SCANS_WINDOW)
    if resumable is not None:
        log.info(
            "scan_resumed",
            scan_id=resumable.scan_id,
            requested_at=resumable.requested_at.isoformat(),
        )
        return resumable

    if start.unfinished_since is not None:
        adopted = await _adopt_unrecorded_scan(env, start.unfinished_since, since)
        if adopted is not None:
            return await _record_started(target, env, adopted, requested_at=start.unfinished_since)

    requested_at = env.now()
    scan = await env.client.create_scan(known_scan_ids=known_scan_ids)
    log.info("scan_triggered", scan_id=scan.id)
    return await _record_started(target, env, scan, requested_at=requested_at)


async def _adopt_unrecorded_scan(
    env: CycleEnvironment, unfinished_since: datetime, resumable_since: datetime
) -> Scan | None:
    latest = await env.client.get_latest_scan(per_page=1)
    if not latest.id or latest.created_at is None:
        return None
    if latest.created_at < unfinished_since - ADOPTION_CLOCK_SKEW:
        return None
    # A scan that already finished is the dead cycle's result too, and starting another would
    # make two scans for one cycle. Past the poll timeout it is as stale as an old running scan.
    if latest.status.is_terminal and latest.created_at < resumable_since:
        return None
    log.warning(
        "scan_adopted", scan_id=latest.id, reason="an earlier cycle died before recording it"
    )
    return latest


async def _record_started(
    target: TargetSettings, env: CycleEnvironment, scan: Scan, *, requested_at: datetime
) -> ScanRecord:
    async with env.sessions.begin() as session:
        return await record_scan_started(
            session,
            target=target.name,
            scan_id=scan.id,
            requested_at=requested_at,
            status=scan.status,
            status_text=scan.status_text,
            created_at=scan.created_at,
        )


async def poll_scan(target: TargetSettings, env: CycleEnvironment, record: ScanRecord) -> Scan:
    """Poll until the scan is terminal; raise CycleFailure when it failed or timed out."""
    deadline_at = deadline_for(record.requested_at, target.poll.timeout_s)
    polls = record.poll_count

    async def remember(scan: Scan) -> None:
        nonlocal polls
        polls += 1
        async with env.sessions.begin() as session:
            await update_scan_status(
                session,
                record.id,
                scan.status,
                status_text=scan.status_text,
                created_at=scan.created_at,
                poll_count=polls,
            )

    # The poll loop ends by the deadline on its own; the timeout is a backstop against a
    # request that the client keeps retrying past it.
    backstop_s = max((deadline_at - env.now()).total_seconds(), 0) + target.poll.max_interval_s
    try:
        async with asyncio.timeout(backstop_s):
            result = await poll_until_terminal(
                lambda: env.client.get_scan(record.scan_id, per_page=1),
                deadline_at=deadline_at,
                initial_interval_s=target.poll.initial_interval_s,
                max_interval_s=target.poll.max_interval_s,
                now=env.now,
                on_poll=remember,
            )
    except TimeoutError:
        result = PollResult(scan=None, timed_out=True, polls=polls)
    return await _check_poll_result(target, env, record, result)


async def _check_poll_result(
    target: TargetSettings, env: CycleEnvironment, record: ScanRecord, result: PollResult
) -> Scan:
    if result.timed_out or result.scan is None:
        reason = (
            f"scan {record.scan_id} did not finish within poll.timeout_s="
            f"{target.poll.timeout_s:g} seconds"
        )
        if result.last_error:
            reason += f"; last poll error: {result.last_error}"
        async with env.sessions.begin() as session:
            await update_scan_status(session, record.id, ScanStatus.UNKNOWN, error=reason)
        # The scan row stays UNKNOWN with an error, which is not resumable past its deadline.
        raise CycleFailure(CycleStatus.TIMED_OUT, reason, result.scan)

    scan = result.scan
    if scan.status is not ScanStatus.COMPLETED:
        reason = f"scan {scan.id} ended with status {scan.status_text or scan.status.value}"
        async with env.sessions.begin() as session:
            await update_scan_status(
                session, record.id, scan.status, status_text=scan.status_text, error=reason
            )
        raise CycleFailure(CycleStatus.SCAN_FAILED, reason, scan)
    log.info("scan_completed", polls=result.polls)
    return scan


async def store_and_enqueue(
    target: TargetSettings,
    env: CycleEnvironment,
    record: ScanRecord,
    scan: Scan,
    collection: Collection,
) -> CycleResult:
    """Store the scan, apply its diff and enqueue its alerts in one transaction.

    The finding states are read first, outside the write transaction, so that suppressions can
    be fetched from DigitalOcean only when the diff has something to alert. The lease keeps
    every other writer away from this target's states in between, so the row ids that
    `apply_diff` updates by stay valid.
    """
    async with env.sessions.begin() as session:
        states = await load_finding_states(session, target.name)
        first_scan = await _is_first_scan(session, target.name, record.id, bool(states))
    diff = compute_diff(states, collection.scan)
    suppressions = await _suppressions_if_needed(target, env, diff)
    now = env.now()
    plan = decide_alerts(
        diff,
        policy=alert_policy_of(target),
        first_scan=first_scan,
        scan_created_at=scan.created_at,
        now=now,
        mutes=env.mutes,
        suppressions=suppressions,
    )
    deliveries = _render(target, env, plan.batches, record.id, now)

    async with env.sessions.begin() as session:
        await store_scan_result(
            session, record.id, collection.scan, collected_at=now, problems=collection.problems
        )
        await apply_diff(session, diff, scan_row_id=record.id, seen_at=now)
        enqueued = await enqueue_deliveries(session, deliveries, created_at=now)
        alerted = {decision.entry.fingerprint for decision in plan.alerted}
        await record_alerts(session, record.id, alerted, alerted_at=now)
        if diff.changes_states:
            await record_cycle_success(session, target.name, now=now)

    if not diff.changes_states:
        reason = f"{diff.reason}: {_first_problems(collection.problems)}"
        raise CycleFailure(CycleStatus.INCOMPLETE, reason, scan)
    return _completed_result(target, scan, diff, plan, enqueued)


def _first_problems(problems: Sequence[str]) -> str:
    """Join the first few problems for the cycle's reason; the scan row keeps all of them."""
    if not problems:
        return "no detail"
    shown = "; ".join(problems[:REASON_PROBLEMS])
    hidden = len(problems) - REASON_PROBLEMS
    return f"{shown}; and {hidden} more" if hidden > 0 else shown


async def _is_first_scan(
    session: AsyncSession, target: str, scan_row_id: int, has_states: bool
) -> bool:
    if has_states:
        return False
    previous = await previous_completed_scan(session, target, before_row_id=scan_row_id)
    return previous is None


async def _suppressions_if_needed(
    target: TargetSettings, env: CycleEnvironment, diff: Diff
) -> tuple[Suppression, ...]:
    threshold = target.alerts.min_severity
    candidates = [
        entry
        for entry in diff.entries
        if entry.kind in (DiffKind.NEW, DiffKind.REOPENED, DiffKind.ESCALATED)
        and entry.severity >= threshold
    ]
    if not candidates:
        return ()
    settings = await env.client.get_settings()
    return settings.suppressions


def alert_policy_of(target: TargetSettings) -> AlertPolicy:
    return AlertPolicy(
        min_severity=target.alerts.min_severity,
        on_first_scan=FirstScanMode(target.alerts.on_first_scan.value),
        notify_resolved=target.alerts.notify_resolved,
    )


def _render(
    target: TargetSettings,
    env: CycleEnvironment,
    batches: Sequence[AlertBatch],
    scan_row_id: int | None,
    now: datetime,
) -> list[NewDelivery]:
    deliveries: list[NewDelivery] = []
    for name in notifier_names(target, env.notifiers):
        notifier = env.notifiers[name]
        for batch in batches:
            for message in render_deliveries(batch, name, notifier, rendered_at=now):
                deliveries.append(
                    NewDelivery(
                        target=target.name,
                        notifier=name,
                        kind=message.kind.value,
                        dedupe_key=message.dedupe_key,
                        payload=message.payload,
                        webhook_id=message.webhook_id,
                        scan_row_id=scan_row_id,
                    )
                )
    return deliveries


def notifier_names(target: TargetSettings, notifiers: Mapping[str, Notifier]) -> list[str]:
    """Return the notifiers a target alerts: those `alerts.notifiers` names, every configured
    one when the key is left out, and none when it is an empty list."""
    if "notifiers" not in target.alerts.model_fields_set:
        return sorted(notifiers)
    return list(target.alerts.notifiers)


async def _record_failure(
    target: TargetSettings, env: CycleEnvironment, failure: CycleFailure
) -> CycleResult:
    """Count the failure in the target's streak and alert once when the streak reaches the
    target's `failure_alert_after`."""
    log.error("cycle_failed", status=failure.status.value, reason=failure.reason)
    now = env.now()
    try:
        async with env.sessions.begin() as session:
            streak = await record_cycle_failure(
                session, target.name, now=now, reason=failure.reason
            )
            batch = failure_batch(
                target.name,
                consecutive_failures=streak,
                threshold=target.alerts.failure_alert_after,
                reason=failure.reason,
                now=now,
            )
            if batch is not None:
                deliveries = _render(target, env, [batch], None, now)
                await enqueue_deliveries(session, deliveries, created_at=now)
    except SQLAlchemyError as error:
        log.error("cycle_failure_not_recorded", error=_describe_error(error))
    scan = failure.scan
    return CycleResult(
        target.name,
        failure.status,
        scan_id=scan.id if scan is not None else None,
        scan_status=scan.status.value if scan is not None else None,
        reason=failure.reason,
    )


def _completed_result(
    target: TargetSettings, scan: Scan, diff: Diff, plan: AlertPlan, enqueued: int
) -> CycleResult:
    counts = {kind.value: count for kind, count in diff.counts().items()}
    return CycleResult(
        target.name,
        CycleStatus.COMPLETED,
        scan_id=scan.id,
        scan_status=scan.status.value,
        counts=counts,
        alerted=len(plan.alerted),
        deliveries_enqueued=enqueued,
    )


def _describe_error(error: BaseException) -> str:
    if isinstance(error, SQLAlchemyError):
        # SQLAlchemy's message can include the statement and its parameters; the first line
        # names the failure without them.
        cause = getattr(error, "orig", None) or error
        return f"database error: {(str(cause) or type(cause).__name__).splitlines()[0]}"
    return str(error) or type(error).__name__


def _log_summary(result: CycleResult) -> None:
    event = log.info if result.status.succeeded else log.error
    event(
        "cycle_finished",
        target=result.target,
        scan_id=result.scan_id,
        status=result.status.value,
        scan_status=result.scan_status,
        reason=result.reason or None,
        new=result.counts.get("new", 0),
        reopened=result.counts.get("reopened", 0),
        escalated=result.counts.get("escalated", 0),
        resolved=result.counts.get("resolved", 0),
        alerted=result.alerted,
        deliveries_enqueued=result.deliveries_enqueued,
        requests=result.requests,
        duration_s=round(result.duration_s, 3),
    )
