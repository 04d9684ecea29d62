"""APScheduler wiring for the daemon: one job per target, the dispatcher and the retention job.

`build_scheduler` returns an APScheduler 3 `AsyncIOScheduler` that the daemon starts inside its
event loop. Every job shares the defaults in `JOB_DEFAULTS`: missed run times are coalesced
into one run, a job never overlaps itself, and a run that starts more than
`MISFIRE_GRACE_S` late is dropped and logged as an error.

A cron schedule follows the wall clock of its time zone (UTC unless `timezone` is set):

- On a spring-forward night, a time inside the skipped hour does not exist. APScheduler runs it
  one hour later by the wall clock (a 02:30 job runs at 03:30), once.
- On a fall-back night, a time inside the repeated hour exists twice. `WallClockCronTrigger`
  runs it at the first occurrence only, so a daily job runs once. A job that runs every hour
  therefore skips the repeated hour, with a two-hour gap.

An `interval_s` schedule counts elapsed seconds and ignores time zones and DST. Its runs fall
on multiples of `interval_s` since the Unix epoch, so every replica of the daemon has the same
run times, and `slot_started_at` names the slot a scheduled run belongs to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.exc import SQLAlchemyError

from service.config import ScheduleSettings, Settings, TargetSettings, parse_cron

log = structlog.get_logger(__name__)

# A run may start up to 5 minutes late, after a blocked event loop or a suspended host. A later
# run is dropped and logged as missed, and the job waits for its next run time.
MISFIRE_GRACE_S = 300
# APScheduler 3 applies these to each job when the scheduler starts. Passing
# misfire_grace_time to the scheduler itself, outside job_defaults, has no effect.
JOB_DEFAULTS: dict[str, Any] = {
    "coalesce": True,
    "max_instances": 1,
    "misfire_grace_time": MISFIRE_GRACE_S,
}

# Interval schedules count from here, so that every process has the same run times.
INTERVAL_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

DISPATCH_JOB_ID = "dispatch"
RETENTION_JOB_ID = "retention"


def target_job_id(name: str) -> str:
    """Return the scheduler job id of the target called `name`."""
    return f"target:{name}"


class WallClockCronTrigger(CronTrigger):  # type: ignore[misc]  # APScheduler 3 has no type hints
    """A `CronTrigger` that fires each wall-clock time at most once on a fall-back night.

    APScheduler 3.11.3's `CronTrigger` fires a time inside the repeated hour twice, once for
    each UTC offset, so a daily job at 02:30 in Europe/Berlin would run twice on the last Sunday of
    October. This subclass skips the second occurrence.
    """

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        fire_at: datetime | None = super().get_next_fire_time(previous_fire_time, now)
        while fire_at is not None and _is_second_occurrence(fire_at):
            fire_at = super().get_next_fire_time(fire_at, fire_at)
        return fire_at


def _is_second_occurrence(moment: datetime) -> bool:
    """Tell whether `moment` is the later of two instants that share its wall-clock time."""
    return moment.fold == 1 and moment.replace(fold=0).utcoffset() != moment.utcoffset()


def build_trigger(schedule: ScheduleSettings) -> WallClockCronTrigger | IntervalTrigger:
    """Return the APScheduler trigger of a target's schedule."""
    if schedule.cron is not None:
        return WallClockCronTrigger(**parse_cron(schedule.cron), timezone=schedule.zone)
    return IntervalTrigger(seconds=schedule.interval_s, start_date=INTERVAL_EPOCH, timezone=UTC)


def slot_started_at(schedule: ScheduleSettings, now: datetime) -> datetime | None:
    """Return the schedule's latest run time at or before `now`: the start of the slot that a
    run starting now belongs to. None when no run time falls in the last `MISFIRE_GRACE_S`
    seconds, because the scheduler drops a run that would start later than that."""
    trigger = build_trigger(schedule)
    latest_at: datetime | None = None
    fire_at = trigger.get_next_fire_time(None, now - timedelta(seconds=MISFIRE_GRACE_S))
    while fire_at is not None and fire_at <= now:
        latest_at = fire_at
        fire_at = trigger.get_next_fire_time(fire_at, fire_at)
    return latest_at


def build_scheduler(
    settings: Settings,
    *,
    run_target: Callable[[TargetSettings], Awaitable[object]],
    dispatch: Callable[[], Awaitable[object]],
    prune: Callable[[], Awaitable[object]],
) -> AsyncIOScheduler:
    """Build the daemon's scheduler, not yet started.

    Jobs: `target:<name>` runs `run_target` on each target's schedule, `dispatch` runs
    `dispatch` every `dispatch.interval_s` seconds, and `retention` runs `prune` daily at
    `retention.run_time_utc`. A listener logs missed runs and failed jobs as errors and runs
    skipped because the previous run is still going as warnings. Call `start()` from inside
    the running event loop.
    """
    scheduler = AsyncIOScheduler(timezone=UTC, job_defaults=dict(JOB_DEFAULTS))
    for target in settings.targets:
        scheduler.add_job(
            _run_target_job,
            build_trigger(target.schedule),
            args=(run_target, target),
            id=target_job_id(target.name),
            name=f"scan cycle of target {target.name}",
        )
    scheduler.add_job(
        _run_job,
        IntervalTrigger(seconds=settings.dispatch.interval_s, timezone=UTC),
        args=(dispatch, DISPATCH_JOB_ID),
        id=DISPATCH_JOB_ID,
        name="dispatch pending deliveries",
    )
    hour, minute = settings.retention.run_time_utc.split(":")
    scheduler.add_job(
        _run_job,
        CronTrigger(hour=int(hour), minute=int(minute), timezone=UTC),
        args=(prune, RETENTION_JOB_ID),
        id=RETENTION_JOB_ID,
        name="delete data past retention",
    )
    scheduler.add_listener(
        _log_job_event, EVENT_JOB_MISSED | EVENT_JOB_ERROR | EVENT_JOB_MAX_INSTANCES
    )
    return scheduler


# The executor awaits a job only when its function is a coroutine function. These wrappers are
# one, whatever kind of callable returns the awaitable.
async def _run_target_job(
    run_target: Callable[[TargetSettings], Awaitable[object]], target: TargetSettings
) -> None:
    with structlog.contextvars.bound_contextvars(target=target.name):
        await _run_job(lambda: run_target(target), target_job_id(target.name))


async def _run_job(job: Callable[[], Awaitable[object]], job_id: str) -> None:
    try:
        await job()
    except asyncio.CancelledError:
        # Only the daemon's shutdown cancels a running job. Ending the job here keeps
        # APScheduler from logging the stop as a failed job with a traceback.
        log.info("scheduled_job_stopped", job_id=job_id, reason="the daemon is shutting down")
    except SQLAlchemyError as error:
        # The database is down or refused a statement: an outage, not a bug, so one line
        # without a traceback. The job runs again at its next time.
        cause = getattr(error, "orig", None) or error
        first_line = (str(cause) or type(cause).__name__).splitlines()[0]
        log.error("scheduled_job_failed", job_id=job_id, error=f"database error: {first_line}")


def _log_job_event(event: JobEvent) -> None:
    if event.code == EVENT_JOB_MISSED:
        log.error(
            "scheduled_run_missed",
            job_id=event.job_id,
            scheduled_run_at=_utc_text(event.scheduled_run_time),
            misfire_grace_s=MISFIRE_GRACE_S,
        )
    elif event.code == EVENT_JOB_ERROR:
        log.error(
            "scheduled_job_failed",
            job_id=event.job_id,
            scheduled_run_at=_utc_text(event.scheduled_run_time),
            error=f"{type(event.exception).__name__}: {event.exception}",
            exc_info=event.exception,
        )
    elif event.code == EVENT_JOB_MAX_INSTANCES:
        log.warning(
            "scheduled_run_skipped",
            job_id=event.job_id,
            scheduled_run_at=[_utc_text(moment) for moment in event.scheduled_run_times],
            reason="the previous run of this job is still running",
        )


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat()
