"""Per-token pacing under DigitalOcean's request budgets.

DigitalOcean allows each token 250 requests a minute and 5,000 an hour, and each request counts
for one minute and one hour after it is made. Sources: the `ratelimit-limit` header description
in DigitalOcean's OpenAPI file, and its API reference, "Rate Limit". Every response reports the
hourly budget left in `ratelimit-remaining` and the Unix time at which the oldest counted request
expires in `ratelimit-reset`.

The limiter hands out send times in first-come order. A request may go when fewer than the limit
of earlier requests fall inside each window, and, once a response has reported the hourly budget
as spent, not before that budget's reset. Because the budget belongs to the token, every client
object in the process that uses the same token and API origin shares one limiter
(`limiter_for`). The limiter keeps no asyncio objects, so clients on different event loops can
share it.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

MINUTE_S = 60.0
HOUR_S = 3600.0
# With the hourly budget spent and no reset time known, one request goes out this often to learn
# the budget from its response headers.
BUDGET_PROBE_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Request budget of one token and how the client keeps to it.

    `margin_s` widens both windows, because DigitalOcean counts a request when it arrives and
    arrival times drift from send times by network jitter. `max_wait_s` is the longest wait a
    429 may request: a longer one raises RateLimitedError at once. `minute_s` and `hour_s` are
    the window lengths; only a benchmark against a time-compressed simulator changes them.
    """

    per_minute: int = 250
    per_hour: int = 5000
    margin_s: float = 1.0
    max_wait_s: float = HOUR_S
    minute_s: float = MINUTE_S
    hour_s: float = HOUR_S

    def __post_init__(self) -> None:
        if self.per_minute < 1 or self.per_hour < 1:
            raise ValueError(
                f"invalid rate limits per_minute={self.per_minute}, per_hour={self.per_hour}: "
                "both must be at least 1"
            )
        if self.minute_s <= 0 or self.hour_s <= 0:
            raise ValueError(
                f"invalid rate limits minute_s={self.minute_s}, hour_s={self.hour_s}: "
                "both must be more than 0"
            )
        if self.margin_s < 0 or self.max_wait_s < 0:
            raise ValueError(
                f"invalid rate limits margin_s={self.margin_s}, max_wait_s={self.max_wait_s}: "
                "both must be zero or more"
            )


class SlidingWindow:
    """Send times of the requests that still count against one window, oldest first."""

    def __init__(self, limit: int, length_s: float) -> None:
        self.limit = limit
        self.length_s = length_s
        self._sent_at: deque[float] = deque()

    def forget_before(self, now: float) -> None:
        while self._sent_at and self._sent_at[0] <= now - self.length_s:
            self._sent_at.popleft()

    def ready_at(self, now: float) -> float:
        """Return the earliest time at or after `now` at which one more request fits."""
        if len(self._sent_at) < self.limit:
            return now
        return max(now, self._sent_at[-self.limit] + self.length_s)

    def add(self, sent_at: float) -> None:
        self._sent_at.append(sent_at)


class RateLimiter:
    """Paces the requests of one token under the minute and hour windows and the reported budget.

    `clock` is monotonic seconds and `wall_clock` Unix seconds (to read `ratelimit-reset`); tests
    pass fake ones. `reserve` is synchronous and returns the wait, so it can be tested without
    sleeping. `slot` reserves, sleeps and counts the request as in flight until it ends.
    """

    def __init__(
        self,
        limits: RateLimits,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._minute = SlidingWindow(limits.per_minute, limits.minute_s + limits.margin_s)
        self._hour = SlidingWindow(limits.per_hour, limits.hour_s + limits.margin_s)
        self._last_slot_at = float("-inf")
        self._paused_until = float("-inf")
        # Hourly budget left by the last response, less the requests sent since then.
        self._budget: int | None = None
        self._budget_reset_at: float | None = None
        self._last_probe_at = float("-inf")
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Requests that hold a slot and have not finished yet."""
        return self._in_flight

    def reserve(self) -> float:
        """Reserve the next send time and return the seconds to wait for it (0 or more)."""
        with self._lock:
            now = self._clock()
            self._minute.forget_before(now)
            self._hour.forget_before(now)
            slot_at = max(
                now,
                self._last_slot_at,
                self._paused_until,
                self._minute.ready_at(now),
                self._hour.ready_at(now),
                self._budget_ready_at(now),
            )
            self._minute.add(slot_at)
            self._hour.add(slot_at)
            self._spend_budget(slot_at)
            self._last_slot_at = slot_at
            self._in_flight += 1
            return slot_at - now

    def release(self) -> None:
        """Mark one reserved request as finished."""
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Wait for a send time, then hold it as in flight until the block ends."""
        delay_s = self.reserve()
        try:
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            yield
        finally:
            self.release()

    def record_budget(self, remaining: int | None, reset_epoch_s: float | None) -> None:
        """Take the hourly budget from a response's `ratelimit-remaining` and `ratelimit-reset`.

        Call it inside the request's slot: requests still in flight may not have been counted
        yet, so they are taken off the reported budget.
        """
        with self._lock:
            if remaining is not None:
                self._budget = remaining - max(0, self._in_flight - 1)
            if reset_epoch_s is not None:
                self._budget_reset_at = self._clock() + (reset_epoch_s - self._wall_clock())

    def pause_for(self, wait_s: float) -> None:
        """Hold every request of this token for `wait_s` seconds, after a 429."""
        with self._lock:
            self._paused_until = max(self._paused_until, self._clock() + wait_s)

    def _budget_ready_at(self, now: float) -> float:
        if self._budget is None or self._budget > 0:
            return now
        if self._budget_reset_at is not None and self._budget_reset_at > now:
            return self._budget_reset_at
        return max(now, self._last_probe_at + BUDGET_PROBE_INTERVAL_S)

    def _spend_budget(self, slot_at: float) -> None:
        if self._budget is None:
            return
        if self._budget > 0:
            self._budget -= 1
            return
        # The budget is spent and this request goes out as a probe at or after the reset: the
        # reset time is used up, and the probe's response reports the budget again.
        self._budget_reset_at = None
        self._last_probe_at = slot_at


def wait_after_429(headers: Mapping[str, str], *, now_epoch_s: float, backoff_s: float) -> float:
    """Return the seconds to wait after a 429 response.

    `Retry-After` wins when present (DigitalOcean sends it with per-minute 429s); else the wait
    lasts until `ratelimit-reset` if that is in the future; else `backoff_s`. `headers` has
    lower-case names.
    """
    retry_after_s = parse_retry_after(headers.get("retry-after"), now_epoch_s=now_epoch_s)
    if retry_after_s is not None:
        return retry_after_s
    reset_epoch_s = _parse_float(headers.get("ratelimit-reset"))
    if reset_epoch_s is not None and reset_epoch_s > now_epoch_s:
        return reset_epoch_s - now_epoch_s
    return backoff_s


def parse_retry_after(value: str | None, *, now_epoch_s: float) -> float | None:
    """Parse `Retry-After` as seconds or an HTTP date; return None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    seconds = _parse_float(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        retry_at = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, retry_at.timestamp() - now_epoch_s)


def _parse_float(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) else None


_limiters: dict[tuple[str, str], RateLimiter] = {}
_limiters_lock = threading.Lock()


def limiter_for(token: str, api_origin: str, limits: RateLimits) -> RateLimiter:
    """Return the process's limiter for this token at this API origin, creating it if needed.

    The first caller's limits apply to every later client with the same token and origin. The
    registry keys on a SHA-256 digest, so it keeps no token.
    """
    key = (api_origin, hashlib.sha256(token.encode()).hexdigest())
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = RateLimiter(limits)
            _limiters[key] = limiter
        return limiter
