"""The simulator as the benchmark runs it, and a record of every request it serves.

The recorder is the outermost middleware, so it records each request as it arrives, before the
simulated latency and the rate limits, and each final response. Counting on the server side
treats the service and the pydo baseline alike.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler
from team import RequestCounts

from service.simulator import Scenario, Simulator, SimulatorRateLimits, run_simulator
from service.simulator.ratelimit import HOUR_S, MINUTE_S


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request: route name, `per_page` asked for, status, and monotonic times."""

    route: str
    per_page: int | None
    status: int
    arrived_s: float
    answered_s: float

    @property
    def kind(self) -> str:
        """The request's part in a cycle, as `RequestCounts` names it."""
        if self.route == "create_scan":
            return "triggers"
        if self.route == "get_scan":
            # Polls ask for one finding; finding pages ask for a full page.
            return "polls" if self.per_page == 1 else "finding_pages"
        if self.route == "affected_resources":
            return "resource_pages"
        if self.route == "get_settings":
            return "settings_pages"
        return "other"


class RequestRecorder:
    """Records every request the simulator serves, oldest first."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        arrived_s = time.monotonic()
        response = await handler(request)
        self.requests.append(
            RecordedRequest(
                route=request.match_info.route.name or "unknown",
                per_page=_int_or_none(request.query.get("per_page")),
                status=response.status,
                arrived_s=arrived_s,
                answered_s=time.monotonic(),
            )
        )
        return response

    def clear(self) -> None:
        self.requests.clear()


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class RequestSummary:
    """The requests of one client's work, as the recorder recorded them.

    `collection_s` runs from the arrival of the first findings page to the response to the
    last findings or resource page. `fastest_span_s` is the least time from the first to the last
    arrival that the rate limits allow for this many requests (0 when they fit in one window);
    `rate_share` divides it by the measured span, and is None when the limits do not bind.
    """

    counts: RequestCounts
    rate_limited: int
    span_s: float
    collection_s: float
    fastest_span_s: float
    rate_share: float | None
    requests_per_minute: float | None

    def as_dict(self) -> dict[str, object]:
        return {
            "counts": self.counts.as_dict(),
            "rate_limited": self.rate_limited,
            "span_s": self.span_s,
            "collection_s": self.collection_s,
            "fastest_span_s": self.fastest_span_s,
            "rate_share": self.rate_share,
            "requests_per_minute": self.requests_per_minute,
        }


def summarize(requests: Sequence[RecordedRequest], limits: SimulatorRateLimits) -> RequestSummary:
    """Count the requests by kind and compare their pace with what `limits` allow."""
    accepted = [request for request in requests if request.status != 429]
    by_kind: dict[str, int] = {}
    for request in accepted:
        by_kind[request.kind] = by_kind.get(request.kind, 0) + 1
    arrivals = sorted(request.arrived_s for request in accepted)
    span_s = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    fastest_s = fastest_span_s(len(arrivals), limits)
    return RequestSummary(
        counts=RequestCounts(**by_kind),
        rate_limited=len(requests) - len(accepted),
        span_s=span_s,
        collection_s=_collection_s(accepted),
        fastest_span_s=fastest_s,
        rate_share=fastest_s / span_s if fastest_s > 0 and span_s > 0 else None,
        requests_per_minute=(len(arrivals) - 1) / span_s * MINUTE_S if span_s > 0 else None,
    )


def fastest_span_s(requests: int, limits: SimulatorRateLimits) -> float:
    """Return the least time between the first and the last of `requests` requests that
    sliding windows of `per_minute` a minute and `per_hour` an hour allow.

    Request i may arrive no sooner than one window after request i - limit, so the last of n
    requests comes at least window * floor((n - 1) / limit) after the first.
    """
    if requests < 2:
        return 0.0
    return max(
        MINUTE_S * math.floor((requests - 1) / limits.per_minute),
        HOUR_S * math.floor((requests - 1) / limits.per_hour),
    )


def _collection_s(requests: Sequence[RecordedRequest]) -> float:
    pages = [r for r in requests if r.kind in ("finding_pages", "resource_pages")]
    if not pages:
        return 0.0
    return max(r.answered_s for r in pages) - min(r.arrived_s for r in pages)


@asynccontextmanager
async def serve_team(
    scenario: Scenario,
    *,
    latency_s: float,
    limits: SimulatorRateLimits,
    token: str,
    scans_before: int = 0,
) -> AsyncIterator[tuple[Simulator, RequestRecorder]]:
    """Serve `scenario` with a recorder.

    `scans_before` scans are created first, directly in the simulator's state, so that the
    client's own scan follows the scenario's later plans."""
    recorder = RequestRecorder()
    async with run_simulator(
        scenario,
        token=token,
        latency_s=latency_s,
        rate_limits=limits,
        middlewares=[recorder.middleware],
    ) as simulator:
        for _ in range(scans_before):
            simulator.state.create_scan()
        yield simulator, recorder
