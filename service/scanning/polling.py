"""Poll a scan until it reaches a terminal status or its deadline passes.

Polls ask for one finding per page, so each costs one small request. The interval doubles from
`initial_interval_s` to `max_interval_s`, and the last sleep is cut short at the deadline, so a
poll loop always ends by its deadline whatever the API returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from service.digitalocean.errors import (
    ApiConnectionError,
    InvalidResponseError,
    RateLimitedError,
    ServerError,
)
from service.digitalocean.models import Scan

log = structlog.get_logger(__name__)

# Errors that the client raises after its own retries but that may pass before the deadline:
# polling goes on. Authentication and not-found errors end the poll at once.
_TRANSIENT_ERRORS = (ApiConnectionError, InvalidResponseError, RateLimitedError, ServerError)


@dataclass(frozen=True, slots=True)
class PollResult:
    """The last scan seen (None if no poll succeeded), whether the deadline passed, and the
    number of polls made."""

    scan: Scan | None
    timed_out: bool
    polls: int
    last_error: str = ""


def poll_intervals(initial_interval_s: float, max_interval_s: float) -> Iterator[float]:
    """Yield sleep intervals that double from `initial_interval_s` up to `max_interval_s`."""
    interval_s = max(initial_interval_s, 0.0)
    while True:
        yield min(interval_s, max_interval_s)
        interval_s = min(interval_s * 2 if interval_s > 0 else max_interval_s, max_interval_s)


async def poll_until_terminal(
    get_scan: Callable[[], Awaitable[Scan]],
    *,
    deadline_at: datetime,
    initial_interval_s: float,
    max_interval_s: float,
    now: Callable[[], datetime],
    on_poll: Callable[[Scan], Awaitable[None]] | None = None,
) -> PollResult:
    """Call `get_scan` until the scan is terminal or `deadline_at` passes.

    The first poll happens at once, so a scan that finished while the service was down is read
    without waiting. `on_poll` receives every scan read, for example to record its status.
    """
    intervals = poll_intervals(initial_interval_s, max_interval_s)
    polls = 0
    last_scan: Scan | None = None
    last_error = ""
    while True:
        try:
            scan = await get_scan()
        except _TRANSIENT_ERRORS as error:
            last_error = str(error)
            log.warning("scan_poll_failed", error=last_error, polls=polls)
        else:
            last_scan = scan
            last_error = ""
            if on_poll is not None:
                await on_poll(scan)
            if scan.status.is_terminal:
                return PollResult(scan=scan, timed_out=False, polls=polls + 1)
        polls += 1

        remaining_s = (deadline_at - now()).total_seconds()
        if remaining_s <= 0:
            return PollResult(scan=last_scan, timed_out=True, polls=polls, last_error=last_error)
        await asyncio.sleep(min(next(intervals), remaining_s))


def deadline_for(requested_at: datetime, timeout_s: float) -> datetime:
    """Return the moment a scan requested at `requested_at` counts as timed out."""
    return requested_at + timedelta(seconds=timeout_s)
