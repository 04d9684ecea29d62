"""Clocks for the simulator: the system clock, and a fake one that tests move by hand.

Scan progress, `created_at` values and the rate-limit windows all read the simulator's clock,
so a test with a `FakeClock` can let an hour pass without sleeping.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

# 2026-01-01T00:00:00Z: a fixed start keeps fake-clock timestamps the same from run to run.
FAKE_CLOCK_START_S = 1_767_225_600.0


class Clock(Protocol):
    def now(self) -> float:
        """Return the current time in Unix seconds."""
        ...


class SystemClock:
    """The real wall clock."""

    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that moves only when `advance` is called."""

    def __init__(self, start_s: float = FAKE_CLOCK_START_S) -> None:
        self._now_s = start_s

    def now(self) -> float:
        return self._now_s

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds`; a negative value raises ValueError."""
        if seconds < 0:
            raise ValueError(f"cannot move the clock backwards: advance({seconds}) is negative")
        self._now_s += seconds


def to_datetime(timestamp_s: float) -> datetime:
    """Convert Unix seconds to a timezone-aware UTC datetime."""
    return datetime.fromtimestamp(timestamp_s, UTC)


def format_timestamp(timestamp_s: float) -> str:
    """Format Unix seconds as RFC 3339 in UTC with a `Z` suffix, as DigitalOcean does."""
    return to_datetime(timestamp_s).strftime("%Y-%m-%dT%H:%M:%SZ")
