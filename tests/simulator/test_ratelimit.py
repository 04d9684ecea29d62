"""Sliding hourly and per-minute windows per token, and their headers, with a fake clock."""

from __future__ import annotations

from service.simulator import FakeClock, SimulatorRateLimits
from tests.simulator.calls import SCANS, api_caller
from tests.support.simulators import SimulatorFactory

LIMITS = SimulatorRateLimits(per_minute=3, per_hour=5)


async def test_every_response_has_rate_limit_headers(make_simulator: SimulatorFactory) -> None:
    clock = FakeClock()
    simulator = await make_simulator(clock=clock)
    async with api_caller(simulator) as api:
        ok = await api.get(SCANS)
        unauthorized = await api.get(SCANS, token="unknown")
        missing = await api.get(f"{SCANS}/00000000-0000-4000-8000-000000000000")

    for reply in (ok, unauthorized, missing):
        assert reply.headers["ratelimit-limit"] == "5000"
        assert int(reply.headers["ratelimit-remaining"]) <= 4999
        assert reply.headers["ratelimit-reset"] == str(int(clock.now()) + 3600)
        assert "retry-after" not in reply.headers


async def test_remaining_counts_down_per_token(make_simulator: SimulatorFactory) -> None:
    simulator = await make_simulator(clock=FakeClock(), tokens={"second-token": None})
    async with api_caller(simulator) as api:
        first = [await api.get(SCANS) for _ in range(3)]
        other = await api.get(SCANS, token="second-token")

    assert [reply.headers["ratelimit-remaining"] for reply in first] == ["4999", "4998", "4997"]
    assert other.headers["ratelimit-remaining"] == "4999"


async def test_per_minute_limit_returns_429_with_retry_after(
    make_simulator: SimulatorFactory,
) -> None:
    clock = FakeClock()
    simulator = await make_simulator(clock=clock, rate_limits=LIMITS)
    async with api_caller(simulator) as api:
        await api.get(SCANS)
        clock.advance(20)
        await api.get(SCANS)
        await api.get(SCANS)
        limited = await api.get(SCANS)
        clock.advance(39)
        still_limited = await api.get(SCANS)
        clock.advance(1)
        allowed = await api.get(SCANS)

    assert limited.status == 429
    assert limited.json["id"] == "too_many_requests"
    assert limited.json["message"] == "API rate limit exceeded."
    assert limited.headers["retry-after"] == "40"
    assert limited.headers["ratelimit-remaining"] == "2"
    assert still_limited.status == 429
    assert still_limited.headers["retry-after"] == "1"
    assert allowed.status == 200
    assert simulator.stats.count("list_scans", 429) == 2


async def test_hourly_limit_returns_429_without_retry_after(
    make_simulator: SimulatorFactory,
) -> None:
    clock = FakeClock()
    start = int(clock.now())
    simulator = await make_simulator(clock=clock, rate_limits=LIMITS)
    async with api_caller(simulator) as api:
        for _ in range(5):
            await api.get(SCANS)
            clock.advance(61)
        limited = await api.get(SCANS)

    assert limited.status == 429
    assert "retry-after" not in limited.headers
    assert limited.headers["ratelimit-remaining"] == "0"
    assert limited.headers["ratelimit-reset"] == str(start + 3600)


async def test_hourly_window_slides_one_request_at_a_time(
    make_simulator: SimulatorFactory,
) -> None:
    clock = FakeClock()
    simulator = await make_simulator(clock=clock, rate_limits=LIMITS)
    async with api_caller(simulator) as api:
        for _ in range(5):
            await api.get(SCANS)
            clock.advance(61)
        # The first request was made 305 s ago; it expires 3,600 s after it was made.
        clock.advance(3600 - 305)
        first_freed = await api.get(SCANS)
        limited_again = await api.get(SCANS)

    assert first_freed.status == 200
    assert first_freed.headers["ratelimit-remaining"] == "0"
    assert limited_again.status == 429


async def test_rejected_requests_do_not_count(make_simulator: SimulatorFactory) -> None:
    clock = FakeClock()
    simulator = await make_simulator(clock=clock, rate_limits=LIMITS)
    async with api_caller(simulator) as api:
        for _ in range(3):
            await api.get(SCANS)
        for _ in range(10):
            await api.get(SCANS)
        clock.advance(60)
        after_minute = await api.get(SCANS)

    assert after_minute.status == 200
    assert after_minute.headers["ratelimit-remaining"] == "1"
