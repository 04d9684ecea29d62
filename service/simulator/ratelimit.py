"""Sliding-window rate limits per token, as DigitalOcean's API applies them.

DigitalOcean allows 5,000 requests an hour and 250 a minute per token
(docs.digitalocean.com/reference/api/reference/#rate-limit). Each request counts for one hour
from the moment it is made, so the hourly budget frees up one request at a time. The headers
`ratelimit-limit`, `ratelimit-remaining` and `ratelimit-reset` describe the hourly window; only
a per-minute rejection carries `retry-after`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

from service.simulator.clock import Clock

HOUR_S = 3600.0
MINUTE_S = 60.0


@dataclass(frozen=True, slots=True)
class SimulatorRateLimits:
    """Window sizes in requests; DigitalOcean's defaults are 250 a minute and 5,000 an hour."""

    per_minute: int = 250
    per_hour: int = 5000

    def __post_init__(self) -> None:
        if self.per_minute < 1 or self.per_hour < 1:
            raise ValueError(
                f"rate limits must be at least 1 request, got per_minute={self.per_minute} "
                f"and per_hour={self.per_hour}"
            )


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The outcome of one request against a token's windows, with the headers to send."""

    allowed: bool
    limit: int
    remaining: int
    reset_at_s: int
    retry_after_s: int | None = None

    def headers(self) -> dict[str, str]:
        values = {
            "ratelimit-limit": str(self.limit),
            "ratelimit-remaining": str(self.remaining),
            "ratelimit-reset": str(self.reset_at_s),
        }
        if self.retry_after_s is not None:
            values["retry-after"] = str(self.retry_after_s)
        return values


class _Windows:
    """Request times of one token within the last hour and the last minute."""

    def __init__(self) -> None:
        self.hour: deque[float] = deque()
        self.minute: deque[float] = deque()

    def expire(self, now_s: float) -> None:
        while self.hour and self.hour[0] <= now_s - HOUR_S:
            self.hour.popleft()
        while self.minute and self.minute[0] <= now_s - MINUTE_S:
            self.minute.popleft()


class RateLimiter:
    """Count requests per token in sliding hour and minute windows.

    A rejected request does not count against the windows, so a client that waits for the
    given time gets through.
    """

    def __init__(self, limits: SimulatorRateLimits, clock: Clock) -> None:
        self.limits = limits
        self._clock = clock
        self._windows: dict[str, _Windows] = {}

    def check(self, key: str) -> RateDecision:
        """Count one request for `key` if both windows have room, and return the decision."""
        now_s = self._clock.now()
        windows = self._windows.setdefault(key, _Windows())
        windows.expire(now_s)
        if len(windows.hour) >= self.limits.per_hour:
            return self._decision(windows, now_s, allowed=False)
        if len(windows.minute) >= self.limits.per_minute:
            retry_after_s = math.ceil(windows.minute[0] + MINUTE_S - now_s)
            return self._decision(
                windows, now_s, allowed=False, retry_after_s=max(1, retry_after_s)
            )
        windows.hour.append(now_s)
        windows.minute.append(now_s)
        return self._decision(windows, now_s, allowed=True)

    def peek(self, key: str) -> RateDecision:
        """Return the current headers for `key` without counting a request."""
        now_s = self._clock.now()
        windows = self._windows.setdefault(key, _Windows())
        windows.expire(now_s)
        return self._decision(windows, now_s, allowed=True)

    def reset(self) -> None:
        """Forget every request counted so far."""
        self._windows.clear()

    def _decision(
        self, windows: _Windows, now_s: float, *, allowed: bool, retry_after_s: int | None = None
    ) -> RateDecision:
        oldest_s = windows.hour[0] if windows.hour else now_s
        return RateDecision(
            allowed=allowed,
            limit=self.limits.per_hour,
            remaining=max(0, self.limits.per_hour - len(windows.hour)),
            reset_at_s=math.ceil(oldest_s + HOUR_S),
            retry_after_s=retry_after_s,
        )
