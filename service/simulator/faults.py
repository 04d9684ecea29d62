"""Fault injection: scripted and random failures per route.

`sim.faults.add("get_scan", FaultKind.SERVER_ERROR, times=2)` makes the next two get-scan
requests fail with 500; scripted faults of a route are consumed in the order they were added,
and faults added for route `"*"` apply to any route they fit. `add_random(rate, kinds, seed)`
injects a seeded random mix on top. Every response that a fault changed carries the header
`x-simulator-fault` so that validators can tell it from a real response.
"""

from __future__ import annotations

import enum
import json
import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from service.simulator import routes

FAULT_HEADER = "x-simulator-fault"
ANY_ROUTE = "*"


class FaultKind(enum.Enum):
    """Kinds of fault, each a change to one request or its response."""

    # 429 with retry-after, as a per-minute rejection.
    RATE_LIMITED = "rate_limited"
    # 429 whose ratelimit-reset is already in the past, without retry-after.
    RATE_LIMITED_RESET_PAST = "rate_limited_reset_past"
    # 429 whose ratelimit-reset is in the future, without retry-after.
    RATE_LIMITED_RESET_FUTURE = "rate_limited_reset_future"
    SERVER_ERROR = "server_error"
    BAD_GATEWAY = "bad_gateway"
    SERVICE_UNAVAILABLE = "service_unavailable"
    # Wait `delay_s` seconds, then respond normally without marking the response.
    DELAY = "delay"
    # Close the connection without running the request.
    DROP_BEFORE = "drop_before"
    # Run the request (a scan is created, a suppression deleted), then close the connection.
    DROP_AFTER = "drop_after"
    MALFORMED_BODY = "malformed_body"
    TRUNCATED_BODY = "truncated_body"
    WRONG_SHAPE = "wrong_shape"
    LOWERCASE_ENUMS = "lowercase_enums"
    BARE_SCAN = "bare_scan"
    MISSING_LINKS = "missing_links"
    REPEATED_NEXT = "repeated_next"
    INFLATED_TOTAL = "inflated_total"


STATUS_FAULTS: dict[FaultKind, int] = {
    FaultKind.RATE_LIMITED: 429,
    FaultKind.RATE_LIMITED_RESET_PAST: 429,
    FaultKind.RATE_LIMITED_RESET_FUTURE: 429,
    FaultKind.SERVER_ERROR: 500,
    FaultKind.BAD_GATEWAY: 502,
    FaultKind.SERVICE_UNAVAILABLE: 503,
}

_SCAN_ROUTES = frozenset({routes.CREATE_SCAN, routes.LATEST_SCAN, routes.GET_SCAN})
_PAGED_ROUTES = frozenset({routes.LIST_SCANS, routes.GET_SETTINGS, routes.CREATE_SUPPRESSION})
_EMPTY_BODY_ROUTES = frozenset({routes.CREATE_RULE, routes.DELETE_SUPPRESSION})
_ALL_ROUTES = frozenset(routes.ROUTE_NAMES)

# Routes whose responses each fault kind can change; the others apply to every route.
_APPLICABLE_ROUTES: dict[FaultKind, frozenset[str]] = {
    FaultKind.MALFORMED_BODY: _ALL_ROUTES - _EMPTY_BODY_ROUTES,
    FaultKind.TRUNCATED_BODY: _ALL_ROUTES - _EMPTY_BODY_ROUTES,
    FaultKind.LOWERCASE_ENUMS: _SCAN_ROUTES | {routes.LIST_SCANS},
    FaultKind.BARE_SCAN: _SCAN_ROUTES,
    FaultKind.MISSING_LINKS: _PAGED_ROUTES,
    FaultKind.REPEATED_NEXT: _PAGED_ROUTES,
    FaultKind.INFLATED_TOTAL: _PAGED_ROUTES | {routes.GET_SCAN, routes.LATEST_SCAN},
}


def applies_to(kind: FaultKind, route: str) -> bool:
    """Return whether `kind` can change a response of `route`."""
    return route in _APPLICABLE_ROUTES.get(kind, _ALL_ROUTES)


@dataclass(slots=True)
class Fault:
    """One scripted fault; `times` is how many more requests it applies to (None: no limit)."""

    route: str
    kind: FaultKind
    times: int | None = 1
    delay_s: float = 1.0
    retry_after_s: int = 1
    reset_offset_s: int = 5
    total_excess: int = 10


@dataclass(frozen=True, slots=True)
class AppliedFault:
    """A record of a fault that changed a request: the route and the kind."""

    route: str
    kind: FaultKind


class FaultPlan:
    """Scripted and random faults of one simulator."""

    def __init__(self) -> None:
        self._scripted: deque[Fault] = deque()
        self._random_rate = 0.0
        self._random_kinds: tuple[FaultKind, ...] = ()
        self._random_routes: frozenset[str] = _ALL_ROUTES
        self._rng = random.Random(0)
        self.applied: list[AppliedFault] = []

    def add(
        self,
        route: str,
        kind: FaultKind | str,
        times: int | None = 1,
        *,
        delay_s: float = 1.0,
        retry_after_s: int = 1,
        reset_offset_s: int = 5,
        total_excess: int = 10,
    ) -> Fault:
        """Script a fault for the next `times` requests of `route` (`"*"` for any route).

        `delay_s` is the wait of a DELAY fault, `retry_after_s` the retry-after of
        RATE_LIMITED, `reset_offset_s` how far ratelimit-reset lies in the past or future for
        the RATE_LIMITED_RESET_* kinds, and `total_excess` how much INFLATED_TOTAL adds.
        """
        fault_kind = _parse_kind(kind)
        _check_route(route)
        if route != ANY_ROUTE and not applies_to(fault_kind, route):
            raise ValueError(
                f"fault {fault_kind.value} cannot change responses of route {route}; "
                f"it applies to {', '.join(sorted(_APPLICABLE_ROUTES[fault_kind]))}"
            )
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1 (or None for every request), got {times}")
        fault = Fault(
            route, fault_kind, times, delay_s, retry_after_s, reset_offset_s, total_excess
        )
        self._scripted.append(fault)
        return fault

    def add_random(
        self,
        rate: float,
        kinds: Iterable[FaultKind | str],
        seed: int,
        *,
        route_names: Iterable[str] | None = None,
    ) -> None:
        """Inject a random fault from `kinds` into a share `rate` of requests (0 to 1).

        The choice is seeded, so the same request sequence meets the same faults. A kind that
        cannot change the chosen route's response is skipped for that request.
        """
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, got {rate}")
        parsed = tuple(_parse_kind(kind) for kind in kinds)
        if not parsed:
            raise ValueError("kinds is empty; name at least one FaultKind")
        selected = frozenset(route_names) if route_names is not None else _ALL_ROUTES
        for route in selected:
            _check_route(route)
        self._random_rate = rate
        self._random_kinds = parsed
        self._random_routes = selected
        self._rng = random.Random(seed)

    def clear(self) -> None:
        """Remove every scripted and random fault."""
        self._scripted.clear()
        self._random_rate = 0.0
        self._random_kinds = ()

    def pending(self, route: str | None = None) -> int:
        """Count scripted faults still waiting, for one route or for all."""
        return sum(1 for fault in self._scripted if route is None or fault.route == route)

    def take(self, route: str) -> Fault | None:
        """Return the fault for the next request of `route`, consuming one use of it."""
        fault = self._take_scripted(route) or self._take_random(route)
        if fault is not None:
            self.applied.append(AppliedFault(route, fault.kind))
        return fault

    def _take_scripted(self, route: str) -> Fault | None:
        for fault in self._scripted:
            if fault.route not in (route, ANY_ROUTE) or not applies_to(fault.kind, route):
                continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times == 0:
                    self._scripted.remove(fault)
            return fault
        return None

    def _take_random(self, route: str) -> Fault | None:
        if not self._random_kinds or route not in self._random_routes:
            return None
        # Draw both numbers on every request so one route's choices do not shift another's.
        roll = self._rng.random()
        kind = self._rng.choice(self._random_kinds)
        if roll >= self._random_rate or not applies_to(kind, route):
            return None
        return Fault(route, kind)


def _parse_kind(kind: FaultKind | str) -> FaultKind:
    if isinstance(kind, FaultKind):
        return kind
    try:
        return FaultKind(kind)
    except ValueError:
        allowed = ", ".join(member.value for member in FaultKind)
        raise ValueError(f"unknown fault kind {kind!r}; use one of {allowed}") from None


def _check_route(route: str) -> None:
    if route != ANY_ROUTE and route not in _ALL_ROUTES:
        raise ValueError(
            f"unknown route {route!r}; use {ANY_ROUTE!r} or one of {', '.join(routes.ROUTE_NAMES)}"
        )


def alter_payload(fault: Fault, payload: Any, request_url: str) -> Any:
    """Return the JSON payload as `fault` changes it; the input is not modified."""
    payload = json.loads(json.dumps(payload))
    if fault.kind is FaultKind.WRONG_SHAPE:
        return _wrong_shape(payload)
    if fault.kind is FaultKind.LOWERCASE_ENUMS:
        return _lowercase_enums(payload)
    if fault.kind is FaultKind.BARE_SCAN and isinstance(payload, dict):
        return payload.get("scan", payload)
    if fault.kind is FaultKind.MISSING_LINKS:
        _page_root(payload).pop("links", None)
    elif fault.kind is FaultKind.REPEATED_NEXT:
        root = _page_root(payload)
        root.setdefault("links", {}).setdefault("pages", {})["next"] = request_url
    elif fault.kind is FaultKind.INFLATED_TOTAL:
        _inflate_totals(payload, fault.total_excess)
    return payload


def broken_body(fault: Fault, body: bytes) -> bytes:
    """Return the bytes of a MALFORMED_BODY or TRUNCATED_BODY response."""
    if fault.kind is FaultKind.MALFORMED_BODY:
        return b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    return body[: max(1, len(body) // 2)]


def _wrong_shape(payload: Any) -> Any:
    # A list where an object belongs, with the real content inside, so a client that only
    # checks for valid JSON still notices.
    if payload is None:
        return ["unexpected"]
    if isinstance(payload, dict):
        return [{"unexpected": key, "value": value} for key, value in payload.items()]
    return {"unexpected": payload}


def _lowercase_enums(payload: Any) -> Any:
    if isinstance(payload, list):
        return [_lowercase_enums(item) for item in payload]
    if not isinstance(payload, dict):
        return payload
    changed = {}
    for key, value in payload.items():
        if key in ("status", "severity") and isinstance(value, str):
            changed[key] = value.lower()
        else:
            changed[key] = _lowercase_enums(value)
    return changed


def _page_root(payload: Any) -> dict[str, Any]:
    """Return the object that contains `links` and `meta` in a paged response."""
    if not isinstance(payload, dict):
        return {}
    settings = payload.get("settings")
    if isinstance(settings, dict) and isinstance(settings.get("suppressions"), dict):
        suppressions: dict[str, Any] = settings["suppressions"]
        return suppressions
    return payload


def _inflate_totals(payload: Any, excess: int) -> None:
    root = _page_root(payload)
    meta = root.get("meta")
    if isinstance(meta, dict) and isinstance(meta.get("total"), int):
        meta["total"] += excess
    scan = payload.get("scan") if isinstance(payload, dict) else None
    findings: Sequence[Any] = scan.get("findings", []) if isinstance(scan, dict) else []
    for finding in findings:
        if isinstance(finding, dict) and isinstance(finding.get("affected_resources_count"), int):
            finding["affected_resources_count"] += excess
