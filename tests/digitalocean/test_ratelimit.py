"""Unit tests of the per-token rate limiter, driven by a fake clock (nothing sleeps)."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

from service.digitalocean.ratelimit import (
    BUDGET_PROBE_INTERVAL_S,
    RateLimiter,
    RateLimits,
    limiter_for,
    parse_retry_after,
    wait_after_429,
)

START_EPOCH_S = 1_767_225_600.0


class FakeClock:
    """Monotonic and wall time that move only when a test advances them."""

    def __init__(self) -> None:
        self.monotonic_s = 1000.0

    def monotonic(self) -> float:
        return self.monotonic_s

    def wall(self) -> float:
        return START_EPOCH_S + self.monotonic_s

    def advance(self, seconds: float) -> None:
        self.monotonic_s += seconds


def make_limiter(clock: FakeClock, **limits: Any) -> RateLimiter:
    return RateLimiter(RateLimits(**limits), clock=clock.monotonic, wall_clock=clock.wall)


def send(limiter: RateLimiter, clock: FakeClock) -> float:
    """Reserve a slot, move the clock to it, finish the request; return the send time."""
    delay_s = limiter.reserve()
    clock.advance(delay_s)
    limiter.release()
    return clock.monotonic()


def max_in_window(times: list[float], window_s: float) -> int:
    window: deque[float] = deque()
    most = 0
    for sent_at in times:
        window.append(sent_at)
        while window[0] <= sent_at - window_s:
            window.popleft()
        most = max(most, len(window))
    return most


def test_limiter_burst_within_minute_limit_does_not_wait() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, per_minute=250, margin_s=1.0)

    delays = [limiter.reserve() for _ in range(250)]

    assert delays == [0.0] * 250


def test_limiter_past_minute_limit_waits() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, per_minute=250, margin_s=1.0)
    for _ in range(250):
        limiter.reserve()
    clock.advance(10.0)

    delay_s = limiter.reserve()

    assert delay_s == pytest.approx(60.0 + 1.0 - 10.0)


def test_limiter_sustained_load_never_exceeds_the_minute_limit() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, per_minute=250, per_hour=100_000, margin_s=1.0)

    times = [send(limiter, clock) for _ in range(3000)]

    assert max_in_window(times, 60.0) <= 250


def test_limiter_sustained_load_uses_90_percent() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, per_minute=250, per_hour=100_000, margin_s=1.0)

    times = [send(limiter, clock) for _ in range(3000)]

    # 3,000 requests at 250 a minute need at least 11 minutes after the first burst of 250.
    elapsed_min = (times[-1] - times[0]) / 60.0
    achieved_per_minute = (len(times) - 250) / elapsed_min
    assert achieved_per_minute >= 0.9 * 250


def test_limiter_shortened_windows_scale_the_wait() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, per_minute=2, minute_s=6.0, hour_s=360.0, margin_s=0.1)
    send(limiter, clock)
    send(limiter, clock)

    delay_s = limiter.reserve()

    assert delay_s == pytest.approx(6.1)


def test_limiter_hour_limit_holds_past_the_minute_window() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock, per_minute=100, per_hour=10, margin_s=0.0)
    for _ in range(10):
        send(limiter, clock)

    delay_s = limiter.reserve()

    assert delay_s == pytest.approx(3600.0)


def test_limiter_spent_budget_waits_until_reported_reset() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock)
    limiter.reserve()
    limiter.record_budget(remaining=0, reset_epoch_s=clock.wall() + 120)
    limiter.release()

    delay_s = limiter.reserve()

    assert delay_s == pytest.approx(120.0)


def test_limiter_spent_budget_without_future_reset_sends_probes() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock)
    limiter.reserve()
    limiter.record_budget(remaining=0, reset_epoch_s=clock.wall() - 5)
    limiter.release()

    first_probe_s = limiter.reserve()
    second_probe_s = limiter.reserve()

    assert first_probe_s == 0.0
    assert second_probe_s == pytest.approx(BUDGET_PROBE_INTERVAL_S)


def test_limiter_budget_counts_requests_still_in_flight() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock)
    for _ in range(3):
        limiter.reserve()

    # The first response reports 3 left; the two other requests in flight may not be counted.
    limiter.record_budget(remaining=3, reset_epoch_s=clock.wall() + 300)
    limiter.release()
    delays = [limiter.reserve() for _ in range(2)]

    assert delays[0] == 0.0
    assert delays[1] == pytest.approx(300.0)


def test_limiter_pause_after_429_holds_every_request() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock)

    limiter.pause_for(7.5)
    delays = [limiter.reserve() for _ in range(3)]

    assert delays == [pytest.approx(7.5)] * 3


async def test_limiter_slot_counts_in_flight() -> None:
    clock = FakeClock()
    limiter = make_limiter(clock)

    async with limiter.slot():
        in_flight_inside = limiter.in_flight

    assert in_flight_inside == 1
    assert limiter.in_flight == 0


def test_wait_after_429_prefers_retry_after() -> None:
    headers = {"retry-after": "12", "ratelimit-reset": str(int(START_EPOCH_S) + 300)}

    assert wait_after_429(headers, now_epoch_s=START_EPOCH_S, backoff_s=1.0) == 12.0


def test_wait_after_429_waits_for_a_future_reset() -> None:
    headers = {"ratelimit-reset": str(int(START_EPOCH_S) + 300)}

    assert wait_after_429(headers, now_epoch_s=START_EPOCH_S, backoff_s=1.0) == 300.0


def test_wait_after_429_past_reset_backs_off() -> None:
    headers = {"ratelimit-reset": str(int(START_EPOCH_S) - 30)}

    assert wait_after_429(headers, now_epoch_s=START_EPOCH_S, backoff_s=2.5) == 2.5


def test_parse_retry_after_reads_an_http_date() -> None:
    wait_s = parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now_epoch_s=START_EPOCH_S)

    assert wait_s == pytest.approx(30.0)


@pytest.mark.parametrize("value", [None, "", "soon", "inf"])
def test_parse_retry_after_unreadable_value_is_none(value: str | None) -> None:
    assert parse_retry_after(value, now_epoch_s=START_EPOCH_S) is None


def test_limiter_for_same_token_and_origin_is_shared() -> None:
    first = limiter_for("token-shared-aaaa", "http://127.0.0.1:1", RateLimits())
    second = limiter_for("token-shared-aaaa", "http://127.0.0.1:1", RateLimits(per_minute=5))
    other_token = limiter_for("token-shared-bbbb", "http://127.0.0.1:1", RateLimits())

    assert first is second
    assert first is not other_token


@pytest.mark.parametrize(
    "limits",
    [
        {"per_minute": 0},
        {"per_hour": 0},
        {"margin_s": -1.0},
        {"max_wait_s": -1.0},
        {"minute_s": 0.0},
        {"hour_s": -5.0},
    ],
)
def test_rate_limits_invalid_values_are_rejected(limits: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="invalid rate limits"):
        RateLimits(**limits)
