"""A simulator middleware that holds chosen requests or changes their responses.

A fault test uses it to make one step of a cycle observable from outside the service process:
`hold` parks the Nth matching request (before or after the simulator handled it) and sets an
event when it arrives, so the test can send a signal at exactly that step. `replace` answers
matching requests with a hostile body instead of the simulator's own, and `rewrite` changes
the simulator's JSON answer.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from service.simulator import routes

RequestFilter = Callable[[web.Request], bool]
# Changes a decoded JSON body in place; gets the request too, for its URL.
BodyRewrite = Callable[[Any, web.Request], None]


def any_request(_request: web.Request) -> bool:
    return True


def poll_request(request: web.Request) -> bool:
    """A get-scan request for one finding per page: a poll of the cycle."""
    return request.query.get("per_page") == "1"


def findings_page_request(request: web.Request) -> bool:
    """A get-scan request for a full page of findings: the collection step."""
    return request.query.get("per_page") not in (None, "1")


@dataclass
class Hold:
    """One planned hold: the `nth` request of `route` that passes `matches` waits for
    `release`. `after_handler` lets the simulator run the request first (a scan is created)
    and withholds only the response."""

    route: str
    matches: RequestFilter
    nth: int
    after_handler: bool
    seen: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        self.released.set()


@dataclass
class Replacement:
    """Responses that replace the simulator's for matching requests; `remaining` None means
    every matching request."""

    route: str
    matches: RequestFilter
    status: int
    body: bytes
    content_type: str
    remaining: int | None
    served: int = 0


@dataclass
class Rewrite:
    """A change to the simulator's successful JSON answers of matching requests."""

    route: str
    matches: RequestFilter
    change: BodyRewrite
    served: int = 0


class ApiGate:
    """Holds, replacements and rewrites for one simulator; pass `middleware` to
    `make_simulator`."""

    def __init__(self) -> None:
        self.holds: list[Hold] = []
        self.replacements: list[Replacement] = []
        self.rewrites: list[Rewrite] = []

    def hold(
        self,
        route: str,
        *,
        matches: RequestFilter = any_request,
        nth: int = 1,
        after_handler: bool = False,
    ) -> Hold:
        planned = Hold(route, matches, nth, after_handler)
        self.holds.append(planned)
        return planned

    def replace(
        self,
        route: str,
        body: bytes,
        *,
        matches: RequestFilter = any_request,
        status: int = 200,
        content_type: str = "application/json",
        times: int | None = None,
    ) -> Replacement:
        planned = Replacement(route, matches, status, body, content_type, times)
        self.replacements.append(planned)
        return planned

    def rewrite(
        self, route: str, change: BodyRewrite, *, matches: RequestFilter = any_request
    ) -> Rewrite:
        planned = Rewrite(route, matches, change)
        self.rewrites.append(planned)
        return planned

    def clear(self) -> None:
        """Drop every replacement and rewrite; holds stay until released."""
        self.replacements.clear()
        self.rewrites.clear()

    def release_all(self) -> None:
        for planned in self.holds:
            planned.release()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.name or routes.UNKNOWN_ROUTE
        replacement = self._replacement_for(route, request)
        if replacement is not None:
            replacement.served += 1
            return web.Response(
                status=replacement.status,
                body=replacement.body,
                content_type=replacement.content_type,
            )
        rewrite = self._rewrite_for(route, request)
        if rewrite is not None:
            return await self._rewritten(rewrite, request, handler)
        planned = self._hold_for(route, request)
        if planned is None:
            return await handler(request)
        if not planned.after_handler:
            planned.arrived.set()
            await planned.released.wait()
            return await handler(request)
        response = await handler(request)
        planned.arrived.set()
        await planned.released.wait()
        return response

    def _replacement_for(self, route: str, request: web.Request) -> Replacement | None:
        for planned in self.replacements:
            if planned.route != route or not planned.matches(request):
                continue
            if planned.remaining is not None:
                if planned.remaining <= 0:
                    continue
                planned.remaining -= 1
            return planned
        return None

    async def _rewritten(
        self, rewrite: Rewrite, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        response = await handler(request)
        if not isinstance(response, web.Response) or response.status >= 400:
            return response
        assert isinstance(response.body, bytes)
        body = json.loads(response.body)
        rewrite.change(body, request)
        rewrite.served += 1
        return web.json_response(body, status=response.status)

    def _rewrite_for(self, route: str, request: web.Request) -> Rewrite | None:
        for planned in self.rewrites:
            if planned.route == route and planned.matches(request):
                return planned
        return None

    def _hold_for(self, route: str, request: web.Request) -> Hold | None:
        for planned in self.holds:
            if planned.route != route or not planned.matches(request):
                continue
            planned.seen += 1
            if planned.seen == planned.nth:
                return planned
        return None
