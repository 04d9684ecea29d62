"""Tests of the daemon's scheduler: job settings, DST behaviour of cron schedules, event logs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from structlog.testing import capture_logs

from service.config import ScheduleSettings, Settings, TargetSettings, load_settings
from service.scheduler import (
    DISPATCH_JOB_ID,
    MISFIRE_GRACE_S,
    RETENTION_JOB_ID,
    WallClockCronTrigger,
    build_scheduler,
    build_trigger,
    target_job_id,
)

RunTarget = Callable[[TargetSettings], Awaitable[object]]


def make_settings(tmp_path: Any, targets_yaml: str) -> Settings:
    path = tmp_path / "cspm-watch.yaml"
    path.write_text(
        f"targets:\n{targets_yaml}\ndispatch: {{interval_s: 45}}\n"
        "retention: {run_time_utc: '04:15'}\n",
        encoding="utf-8",
    )
    return load_settings(path, {"DO_TOKEN": "scheduler-test-token"})


TWO_TARGETS = """
  - {name: prod, token_env: DO_TOKEN, schedule: {cron: "30 2 * * *", timezone: Europe/Berlin}}
  - {name: staging, token_env: DO_TOKEN, schedule: {interval_s: 3600}}
"""


async def do_nothing(*_args: object) -> None:
    return None


@pytest.fixture
async def started_scheduler(tmp_path: Any) -> AsyncIterator[AsyncIOScheduler]:
    """A scheduler built from two targets and started paused, so that no job runs."""
    scheduler = build_scheduler(
        make_settings(tmp_path, TWO_TARGETS),
        run_target=do_nothing,
        dispatch=do_nothing,
        prune=do_nothing,
    )
    scheduler.start(paused=True)
    yield scheduler
    scheduler.shutdown(wait=False)
    await asyncio.sleep(0)  # AsyncIOScheduler shuts down in the next loop iteration


# ---------------------------------------------------------------------------------------------
# Job settings


async def test_build_scheduler_job_defaults_take_effect(
    started_scheduler: AsyncIOScheduler,
) -> None:
    jobs = started_scheduler.get_jobs()

    assert {job.id for job in jobs} == {
        "target:prod",
        "target:staging",
        DISPATCH_JOB_ID,
        RETENTION_JOB_ID,
    }
    for job in jobs:
        assert job.misfire_grace_time == MISFIRE_GRACE_S, job.id
        assert job.coalesce is True, job.id
        assert job.max_instances == 1, job.id


async def test_build_scheduler_triggers(started_scheduler: AsyncIOScheduler) -> None:
    prod = started_scheduler.get_job(target_job_id("prod")).trigger
    staging = started_scheduler.get_job(target_job_id("staging")).trigger
    dispatch = started_scheduler.get_job(DISPATCH_JOB_ID).trigger
    retention = started_scheduler.get_job(RETENTION_JOB_ID).trigger

    assert isinstance(prod, WallClockCronTrigger)
    assert str(prod.timezone) == "Europe/Berlin"
    assert isinstance(staging, IntervalTrigger)
    assert staging.interval == timedelta(hours=1)
    assert isinstance(dispatch, IntervalTrigger)
    assert dispatch.interval == timedelta(seconds=45)
    assert isinstance(retention, CronTrigger)
    assert retention.timezone == UTC
    next_prune_at = retention.get_next_fire_time(None, datetime(2026, 5, 1, tzinfo=UTC))
    assert next_prune_at == datetime(2026, 5, 1, 4, 15, tzinfo=UTC)


def test_build_trigger_cron_weekdays_follow_crontab() -> None:
    trigger = build_trigger(ScheduleSettings(cron="0 9 * * 1"))

    # 2026-05-03 is a Sunday; crontab's day 1 is Monday.
    fire_at = trigger.get_next_fire_time(None, datetime(2026, 5, 3, tzinfo=UTC))

    assert fire_at == datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# DST: a daily cron runs exactly once on every local day


def walk_fire_times(trigger: CronTrigger, start: datetime, days: int) -> list[datetime]:
    """Return every fire time of `trigger` from `start` for `days` days."""
    end = start + timedelta(days=days)
    fire_times: list[datetime] = []
    fire_at = trigger.get_next_fire_time(None, start)
    while fire_at is not None and fire_at < end:
        fire_times.append(fire_at)
        fire_at = trigger.get_next_fire_time(fire_at, fire_at)
    return fire_times


def wall_clock(moment: datetime, zone: ZoneInfo) -> datetime:
    """Return the local time that a clock in `zone` shows at `moment`.

    A fire time inside a skipped hour carries a wall-clock time that does not exist, so it is
    normalized through UTC; `astimezone` to its own zone would return it unchanged.
    """
    return moment.astimezone(UTC).astimezone(zone)


# Each case: zone, daily time, the DST night, the local wall-clock time of the run that day.
DST_CASES = {
    "Berlin spring forward, 02:30 skipped": (
        "Europe/Berlin",
        time(2, 30),
        date(2026, 3, 29),
        time(3, 30),
    ),
    "Berlin fall back, 02:30 repeated": (
        "Europe/Berlin",
        time(2, 30),
        date(2026, 10, 25),
        time(2, 30),
    ),
    "Berlin spring forward, 09:00": ("Europe/Berlin", time(9, 0), date(2026, 3, 29), time(9, 0)),
    "Berlin fall back, 09:00": ("Europe/Berlin", time(9, 0), date(2026, 10, 25), time(9, 0)),
    "New York spring forward, 02:30 skipped": (
        "America/New_York",
        time(2, 30),
        date(2026, 3, 8),
        time(3, 30),
    ),
    "New York fall back, 01:30 repeated": (
        "America/New_York",
        time(1, 30),
        date(2026, 11, 1),
        time(1, 30),
    ),
    "New York fall back, 09:00": ("America/New_York", time(9, 0), date(2026, 11, 1), time(9, 0)),
}


@pytest.mark.parametrize(
    ("zone_name", "daily_at", "dst_date", "expected_local"),
    list(DST_CASES.values()),
    ids=list(DST_CASES),
)
def test_daily_cron_runs_once_per_day_across_dst(
    zone_name: str, daily_at: time, dst_date: date, expected_local: time
) -> None:
    zone = ZoneInfo(zone_name)
    trigger = build_trigger(
        ScheduleSettings(cron=f"{daily_at.minute} {daily_at.hour} * * *", timezone=zone_name)
    )
    start = datetime.combine(dst_date - timedelta(days=3), time(0, 0), tzinfo=zone)

    fire_times = walk_fire_times(trigger, start, days=7)

    local_times = [wall_clock(fire_at, zone) for fire_at in fire_times]
    assert [moment.date() for moment in local_times] == [
        start.date() + timedelta(days=offset) for offset in range(7)
    ]
    runs_on_dst_date = [moment for moment in local_times if moment.date() == dst_date]
    assert len(runs_on_dst_date) == 1
    assert runs_on_dst_date[0].time() == expected_local
    gaps_h = [(later - earlier).total_seconds() / 3600 for earlier, later in pairwise(fire_times)]
    assert all(23 <= gap_h <= 25 for gap_h in gaps_h), gaps_h


def test_plain_cron_trigger_doubles_repeated_hour() -> None:
    """APScheduler's own CronTrigger runs twice on a fall-back night, hence WallClockCronTrigger.

    If this starts failing after an APScheduler upgrade, the subclass may no longer be needed.
    """
    zone = ZoneInfo("Europe/Berlin")
    trigger = CronTrigger(hour=2, minute=30, timezone=zone)

    fire_times = walk_fire_times(trigger, datetime(2026, 10, 24, tzinfo=zone), days=3)

    assert [fire_at.astimezone(zone).date().day for fire_at in fire_times] == [24, 25, 25, 26]


def test_hourly_cron_skips_repeated_hour() -> None:
    zone = ZoneInfo("Europe/Berlin")
    trigger = build_trigger(ScheduleSettings(cron="0 * * * *", timezone="Europe/Berlin"))
    start = datetime(2026, 10, 25, 1, 0, tzinfo=zone)

    fire_times = walk_fire_times(trigger, start, days=1)[:4]

    utc_hours = [fire_at.astimezone(UTC).hour for fire_at in fire_times]
    # 01:00 CEST, 02:00 CEST, then 03:00 CET: the second 02:00 (01:00 UTC) is skipped.
    assert utc_hours == [23, 0, 2, 3]


# ---------------------------------------------------------------------------------------------
# Events: missed runs and failures are logged as errors


async def run_until_event(
    scheduler: AsyncIOScheduler, event_mask: int, trigger_run: Callable[[], None]
) -> None:
    """Start `scheduler`, call `trigger_run`, and wait until an event in `event_mask` fires."""
    seen = asyncio.Event()
    loop = asyncio.get_running_loop()
    scheduler.add_listener(lambda _event: loop.call_soon_threadsafe(seen.set), event_mask)
    scheduler.start()
    try:
        trigger_run()
        await asyncio.wait_for(seen.wait(), timeout=10)
    finally:
        scheduler.shutdown(wait=False)
        await asyncio.sleep(0)


def one_target_scheduler(tmp_path: Any, run_target: RunTarget) -> AsyncIOScheduler:
    settings = make_settings(
        tmp_path, "  - {name: prod, token_env: DO_TOKEN, schedule: {interval_s: 21600}}"
    )
    return build_scheduler(settings, run_target=run_target, dispatch=do_nothing, prune=do_nothing)


async def test_missed_run_logged_as_error(tmp_path: Any) -> None:
    scheduler = one_target_scheduler(tmp_path, do_nothing)
    late_by = timedelta(seconds=MISFIRE_GRACE_S + 60)

    with capture_logs() as logs:
        await run_until_event(
            scheduler,
            EVENT_JOB_MISSED,
            lambda: scheduler.modify_job("target:prod", next_run_time=datetime.now(UTC) - late_by),
        )

    missed = [entry for entry in logs if entry["event"] == "scheduled_run_missed"]
    assert len(missed) == 1
    assert missed[0]["log_level"] == "error"
    assert missed[0]["job_id"] == "target:prod"
    assert missed[0]["misfire_grace_s"] == MISFIRE_GRACE_S


async def test_failed_job_logged_as_error(tmp_path: Any) -> None:
    async def fail(_target: TargetSettings) -> None:
        raise RuntimeError("scan trigger failed")

    scheduler = one_target_scheduler(tmp_path, fail)

    with capture_logs() as logs:
        await run_until_event(
            scheduler,
            EVENT_JOB_ERROR,
            lambda: scheduler.modify_job("target:prod", next_run_time=datetime.now(UTC)),
        )

    failed = [entry for entry in logs if entry["event"] == "scheduled_job_failed"]
    assert len(failed) == 1
    assert failed[0]["log_level"] == "error"
    assert failed[0]["job_id"] == "target:prod"
    assert failed[0]["error"] == "RuntimeError: scan trigger failed"


async def test_target_job_awaits_plain_callable(tmp_path: Any) -> None:
    ran: list[str] = []

    async def record(target: TargetSettings) -> None:
        ran.append(target.name)

    # A lambda is not a coroutine function, so the executor alone would not await its result.
    scheduler = one_target_scheduler(tmp_path, lambda target: record(target))
    done = asyncio.Event()
    scheduler.add_listener(lambda _event: done.set(), EVENT_JOB_ERROR | EVENT_JOB_EXECUTED)

    scheduler.start()
    try:
        scheduler.modify_job("target:prod", next_run_time=datetime.now(UTC))
        await asyncio.wait_for(done.wait(), timeout=10)
    finally:
        scheduler.shutdown(wait=False)
        await asyncio.sleep(0)

    assert ran == ["prod"]


async def test_overlapping_run_skipped_with_warning(tmp_path: Any) -> None:
    running = asyncio.Event()
    release = asyncio.Event()

    async def slow_cycle(_target: TargetSettings) -> None:
        running.set()
        await release.wait()

    scheduler = one_target_scheduler(tmp_path, slow_cycle)

    async def start_second_run() -> None:
        scheduler.modify_job("target:prod", next_run_time=datetime.now(UTC))
        await asyncio.wait_for(running.wait(), timeout=10)
        scheduler.modify_job("target:prod", next_run_time=datetime.now(UTC))

    with capture_logs() as logs:
        starter: asyncio.Task[None] | None = None

        def trigger() -> None:
            nonlocal starter
            starter = asyncio.ensure_future(start_second_run())

        try:
            await run_until_event(scheduler, EVENT_JOB_MAX_INSTANCES, trigger)
        finally:
            release.set()
            if starter is not None:
                await starter

    skipped = [entry for entry in logs if entry["event"] == "scheduled_run_skipped"]
    assert len(skipped) == 1
    assert skipped[0]["log_level"] == "warning"
    assert skipped[0]["job_id"] == "target:prod"
