"""Schedule slots: the run time a scheduled cycle belongs to, the same in every replica."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from service.config import ScheduleSettings
from service.scheduler import MISFIRE_GRACE_S, build_trigger, slot_started_at

NOW = datetime(2026, 5, 4, 7, 2, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (ScheduleSettings(interval_s=60), datetime(2026, 5, 4, 7, 2, tzinfo=UTC)),
        (ScheduleSettings(interval_s=240), datetime(2026, 5, 4, 7, 0, tzinfo=UTC)),
        (ScheduleSettings(cron="*/5 * * * *"), datetime(2026, 5, 4, 7, 0, tzinfo=UTC)),
        (ScheduleSettings(cron="0 7 * * *"), datetime(2026, 5, 4, 7, 0, tzinfo=UTC)),
    ],
)
def test_slot_started_at_latest_run_time(schedule: ScheduleSettings, expected: datetime) -> None:
    assert slot_started_at(schedule, NOW) == expected


def test_slot_started_at_none_past_misfire_grace() -> None:
    # The last run time, 06:00, lies more than the misfire grace before 07:02:30.
    assert MISFIRE_GRACE_S < 3600
    assert slot_started_at(ScheduleSettings(interval_s=21600), NOW) is None


def test_interval_trigger_runs_on_epoch_multiples() -> None:
    # Built now, the trigger still places its runs at 00:00, 06:00, 12:00 and 18:00 UTC.
    trigger = build_trigger(ScheduleSettings(interval_s=21600))
    assert trigger.get_next_fire_time(None, NOW) == datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
