"""The request record: kinds, 429s, collection time and the pace the limits allow."""

from __future__ import annotations

import pytest
from simulated import RecordedRequest, fastest_span_s, summarize

from service.simulator import SimulatorRateLimits

DIGITALOCEAN = SimulatorRateLimits(per_minute=250, per_hour=5000)


@pytest.mark.parametrize(
    ("requests", "expected_s"),
    [(1, 0.0), (250, 0.0), (251, 60.0), (500, 60.0), (501, 120.0), (517, 120.0)],
)
def test_fastest_span_whole_minute_windows(requests: int, expected_s: float) -> None:
    assert fastest_span_s(requests, DIGITALOCEAN) == expected_s


def test_fastest_span_hour_window_binds() -> None:
    limits = SimulatorRateLimits(per_minute=250, per_hour=300)

    assert fastest_span_s(301, limits) == 3600.0


def _request(
    route: str, arrived_s: float, *, per_page: int = 200, status: int = 200
) -> RecordedRequest:
    return RecordedRequest(
        route=route,
        per_page=per_page,
        status=status,
        arrived_s=arrived_s,
        answered_s=arrived_s + 0.5,
    )


def test_summarize_counts_kinds_and_429s() -> None:
    requests = [
        _request("create_scan", 0.0),
        _request("get_scan", 0.1, per_page=1),
        _request("get_scan", 1.0, per_page=1),
        _request("get_scan", 2.0),
        _request("affected_resources", 3.0),
        _request("affected_resources", 3.1, status=429),
        _request("affected_resources", 4.0),
        _request("get_settings", 5.0),
    ]

    summary = summarize(requests, DIGITALOCEAN)

    assert summary.counts.triggers == 1
    assert summary.counts.polls == 2
    assert summary.counts.finding_pages == 1
    assert summary.counts.resource_pages == 2
    assert summary.counts.settings_pages == 1
    assert summary.counts.total == 7
    assert summary.rate_limited == 1
    assert summary.span_s == 5.0
    assert summary.collection_s == pytest.approx(2.5)
    assert summary.rate_share is None


def test_summarize_rate_share_where_limits_bind() -> None:
    limits = SimulatorRateLimits(per_minute=2, per_hour=5000)
    requests = [_request("affected_resources", second) for second in (0.0, 0.1, 60.0, 60.1, 125.0)]

    summary = summarize(requests, limits)

    assert summary.fastest_span_s == 120.0
    assert summary.rate_share == pytest.approx(120.0 / 125.0)
