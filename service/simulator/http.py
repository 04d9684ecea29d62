"""HTTP helpers of the simulator: DigitalOcean's error bodies, paging and query parsing."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

# Values that the middlewares store on each request.
REQUEST_ID_KEY = web.RequestKey("simulator_request_id", str)
ROUTE_KEY = web.RequestKey("simulator_route", str)
FAULT_KEY = web.RequestKey("simulator_fault", str)
# Set when a fault closed the connection, so no response reached the client.
DROPPED_KEY = web.RequestKey("simulator_dropped", bool)

DEFAULT_PER_PAGE = 20
MAX_PER_PAGE = 200

T = TypeVar("T")


class ApiError(Exception):
    """An error that the simulated API returns as `{id, message, request_id}`."""

    def __init__(self, status: int, error_id: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_id = error_id
        self.message = message


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def not_found(message: str = "The resource you requested could not be found.") -> ApiError:
    return ApiError(404, "not_found", message)


def error_response(request: web.Request, status: int, error_id: str, message: str) -> web.Response:
    """Build DigitalOcean's error body with the request's id."""
    body = {"id": error_id, "message": message, "request_id": request.get(REQUEST_ID_KEY, "")}
    return json_response(body, status=status)


def json_response(payload: Any, *, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
        status=status,
        content_type="application/json",
        charset="utf-8",
    )


def empty_response(status: int) -> web.Response:
    return web.Response(status=status)


@dataclass(frozen=True, slots=True)
class PageRequest:
    page: int = 1
    per_page: int = DEFAULT_PER_PAGE

    def slice(self, items: Sequence[T]) -> Sequence[T]:
        start = (self.page - 1) * self.per_page
        return items[start : start + self.per_page]

    def page_count(self, total: int) -> int:
        """Return the number of pages for `total` items; an empty list has one empty page."""
        return max(1, math.ceil(total / self.per_page))


def parse_page_request(request: web.Request) -> PageRequest:
    """Read `page` and `per_page`; out-of-range values are a 400, as documented in
    docs/simulator.md (DigitalOcean does not document them)."""
    page = _integer_parameter(request, "page", default=1, minimum=1, maximum=None)
    per_page = _integer_parameter(
        request, "per_page", default=DEFAULT_PER_PAGE, minimum=1, maximum=MAX_PER_PAGE
    )
    return PageRequest(page=page, per_page=per_page)


def _integer_parameter(
    request: web.Request, name: str, *, default: int, minimum: int, maximum: int | None
) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    allowed = f"from {minimum} to {maximum}" if maximum else f"of at least {minimum}"
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be an integer {allowed}, got {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise bad_request(f"{name} must be an integer {allowed}, got {raw!r}")
    return value


def page_links(request: web.Request, page: PageRequest, total: int) -> dict[str, Any] | None:
    """Return `links` for a paged list, or None when every item fits on one page.

    The URLs are absolute, built from the request's scheme and host, and keep `per_page` and
    the other query parameters. A page past the end links to the first page and, as `prev`,
    to the last one.
    """
    if total <= page.per_page:
        return None
    last = page.page_count(total)
    pages: dict[str, str] = {}
    if page.page > 1:
        pages["first"] = _page_url(request, 1, page.per_page)
        pages["prev"] = _page_url(request, min(page.page - 1, last), page.per_page)
    if page.page < last:
        pages["next"] = _page_url(request, page.page + 1, page.per_page)
        pages["last"] = _page_url(request, last, page.per_page)
    return {"pages": pages}


def _page_url(request: web.Request, number: int, per_page: int) -> str:
    query = dict(request.query)
    query["page"] = str(number)
    query["per_page"] = str(per_page)
    url = request.url.with_query(query)
    return f"{request.scheme}://{request.host}{url.raw_path_qs}"


def request_url(request: web.Request) -> str:
    """Return the absolute URL of the request as the client sent it."""
    return f"{request.scheme}://{request.host}{request.rel_url.raw_path_qs}"


async def read_json_body(request: web.Request, *, required: bool) -> Any:
    """Parse the JSON body; no body gives None unless `required`. Invalid JSON is a 400."""
    raw = await request.read()
    if not raw.strip():
        if required:
            raise bad_request("error parsing request body: the body is empty; send a JSON object")
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad_request("error parsing request body: it is not valid JSON") from None
