"""The simulator's middlewares, outermost first: request context and stats, latency, rate
limits, authentication, faults, and the translation of errors into DigitalOcean's error body."""

from __future__ import annotations

import asyncio
import json
import uuid

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from service.simulator import routes
from service.simulator.context import CONTEXT_KEY
from service.simulator.faults import (
    FAULT_HEADER,
    STATUS_FAULTS,
    Fault,
    FaultKind,
    alter_payload,
    broken_body,
)
from service.simulator.http import (
    DROPPED_KEY,
    FAULT_KEY,
    REQUEST_ID_KEY,
    ROUTE_KEY,
    ApiError,
    error_response,
    json_response,
    request_url,
)
from service.simulator.stats import DROPPED_STATUS

log = structlog.get_logger(__name__)

RATE_LIMIT_MESSAGE = "API rate limit exceeded."
UNAUTHORIZED_MESSAGE = "Unable to authenticate you."
FORBIDDEN_MESSAGE = "You do not have access for the attempted action."

_STATUS_FAULT_ERRORS: dict[int, tuple[str, str]] = {
    429: ("too_many_requests", RATE_LIMIT_MESSAGE),
    500: ("server_error", "Unexpected server-side error"),
    502: ("bad_gateway", "The upstream server returned an invalid response."),
    503: ("service_unavailable", "The service is temporarily unavailable; try again later."),
}


def route_name(request: web.Request) -> str:
    name = request.match_info.route.name
    if name is None or name not in routes.REQUIRED_SCOPES:
        return routes.UNKNOWN_ROUTE
    return name


def bearer_token(request: web.Request) -> str:
    """Return the bearer token of the request, or "" when there is none."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


@web.middleware
async def context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request an id, count it in the stats and turn a crash into a 500."""
    context = request.app[CONTEXT_KEY]
    request[REQUEST_ID_KEY] = str(uuid.uuid4())
    request[ROUTE_KEY] = route_name(request)
    try:
        response = await handler(request)
    except Exception:
        log.exception("simulator_request_failed", route=request[ROUTE_KEY], path=request.path)
        response = error_response(request, 500, "server_error", "Unexpected server-side error")
    status = DROPPED_STATUS if request.get(DROPPED_KEY) else response.status
    context.stats.record(request[ROUTE_KEY], status)
    if status >= 400:
        log.debug(
            "simulator_request_rejected",
            route=request[ROUTE_KEY],
            status=status,
            request_id=request[REQUEST_ID_KEY],
        )
    response.headers["x-request-id"] = request[REQUEST_ID_KEY]
    return response


@web.middleware
async def latency_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    latency_s = request.app[CONTEXT_KEY].latency_s
    if latency_s > 0:
        await asyncio.sleep(latency_s)
    return await handler(request)


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count the request against its token's windows and add the rate-limit headers."""
    context = request.app[CONTEXT_KEY]
    decision = context.limiter.check(bearer_token(request))
    if decision.allowed:
        response = await handler(request)
    else:
        response = error_response(request, 429, "too_many_requests", RATE_LIMIT_MESSAGE)
    # A fault may have set its own values already; those stay.
    for name, value in decision.headers().items():
        response.headers.setdefault(name, value)
    return response


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Reject unknown tokens with 401 and tokens without the route's scope with 403."""
    context = request.app[CONTEXT_KEY]
    token = bearer_token(request)
    if not context.accepts(token):
        return error_response(request, 401, "unauthorized", UNAUTHORIZED_MESSAGE)
    scopes = context.scopes_of(token)
    required = routes.REQUIRED_SCOPES.get(request[ROUTE_KEY])
    if scopes is not None and required is not None and required not in scopes:
        return error_response(request, 403, "forbidden", FORBIDDEN_MESSAGE)
    return await handler(request)


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply the next scripted or random fault of the request's route, if any."""
    context = request.app[CONTEXT_KEY]
    route = request[ROUTE_KEY]
    fault = context.faults.take(route) if route != routes.UNKNOWN_ROUTE else None
    if fault is None:
        return await handler(request)
    log.debug("simulator_fault_applied", route=route, kind=fault.kind.value)
    if fault.kind is FaultKind.DELAY:
        # A delayed response is still a real response, so it is not marked as altered.
        await asyncio.sleep(fault.delay_s)
        return await handler(request)
    request[FAULT_KEY] = fault.kind.value
    if fault.kind in STATUS_FAULTS:
        return _mark(_status_fault_response(request, fault), fault)
    if fault.kind is FaultKind.DROP_BEFORE:
        return _drop_connection(request)
    response = await handler(request)
    if fault.kind is FaultKind.DROP_AFTER:
        return _drop_connection(request)
    return _mark(_altered_response(request, response, fault), fault)


def _status_fault_response(request: web.Request, fault: Fault) -> web.Response:
    status = STATUS_FAULTS[fault.kind]
    error_id, message = _STATUS_FAULT_ERRORS[status]
    response = error_response(request, status, error_id, message)
    now_s = int(request.app[CONTEXT_KEY].clock.now())
    if fault.kind is FaultKind.RATE_LIMITED:
        response.headers["retry-after"] = str(fault.retry_after_s)
    elif fault.kind is FaultKind.RATE_LIMITED_RESET_PAST:
        response.headers["ratelimit-remaining"] = "0"
        response.headers["ratelimit-reset"] = str(now_s - fault.reset_offset_s)
    elif fault.kind is FaultKind.RATE_LIMITED_RESET_FUTURE:
        response.headers["ratelimit-remaining"] = "0"
        response.headers["ratelimit-reset"] = str(now_s + fault.reset_offset_s)
    return response


def _drop_connection(request: web.Request) -> web.Response:
    request[DROPPED_KEY] = True
    if request.transport is not None:
        request.transport.close()
    # aiohttp discards what is written to a closed transport; the client sees a disconnect.
    return web.Response(status=499)


def _altered_response(
    request: web.Request, response: web.StreamResponse, fault: Fault
) -> web.StreamResponse:
    if not isinstance(response, web.Response) or response.status >= 400:
        return response
    body = response.body if isinstance(response.body, bytes) else b""
    if fault.kind in (FaultKind.MALFORMED_BODY, FaultKind.TRUNCATED_BODY):
        altered = web.Response(
            body=broken_body(fault, body), status=response.status, content_type="application/json"
        )
    else:
        payload = json.loads(body) if body else None
        altered = json_response(
            alter_payload(fault, payload, request_url(request)), status=response.status
        )
    for name, value in response.headers.items():
        if name.lower() not in ("content-length", "content-type"):
            altered.headers.setdefault(name, value)
    return altered


def _mark(response: web.StreamResponse, fault: Fault) -> web.StreamResponse:
    response.headers[FAULT_HEADER] = fault.kind.value
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn ApiError and aiohttp's routing errors into DigitalOcean's error body."""
    try:
        return await handler(request)
    except ApiError as error:
        return error_response(request, error.status, error.error_id, error.message)
    except web.HTTPMethodNotAllowed as error:
        allowed = ", ".join(sorted(error.allowed_methods))
        message = f"{request.method} is not allowed here; use {allowed}"
        return error_response(request, 405, "method_not_allowed", message)
    except web.HTTPNotFound:
        return error_response(
            request, 404, "not_found", "The resource you requested could not be found."
        )
    except web.HTTPException as error:
        # For example 413 from aiohttp when a body is larger than the application accepts.
        error_id = error.reason.lower().replace(" ", "_")
        return error_response(request, error.status, error_id, error.text or error.reason)
