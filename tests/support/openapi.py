"""Check every request and response the simulator serves against DigitalOcean's OpenAPI file.

`OpenApiValidator.middleware` wraps the simulator's own middlewares. For each exchange it
checks, with openapi-core:

- a request that the OpenAPI file rejects (bad parameter, missing token, unknown path) gets a
  4xx response, never a success;
- the response matches the operation's declared status, headers and body;
- every response carries `x-request-id` and the three `ratelimit-*` headers, and every error
  body has `id` and `message`.

Responses changed by an injected fault (marked with `x-simulator-fault`) and dropped
connections are skipped. Failures are collected; the fixtures in tests/conftest.py fail the
test at teardown when there are any.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.exceptions import OpenAPIError
from openapi_core.templating.paths.exceptions import PathError
from werkzeug.datastructures import Headers, ImmutableMultiDict

import service.simulator
from service.simulator.faults import FAULT_HEADER
from service.simulator.http import DROPPED_KEY

SPEC_PATH = Path(service.simulator.__file__).parent / "do-security-openapi.yaml"

# The OpenAPI file's only server; requests are matched against it whatever host served them.
SPEC_SERVER_URL = "https://api.digitalocean.com"

REQUIRED_HEADERS = ("x-request-id", "ratelimit-limit", "ratelimit-remaining", "ratelimit-reset")

_MAX_PROBLEM_CHARS = 600


@functools.cache
def load_spec() -> OpenAPI:
    """Load the bundled OpenAPI file once per test session."""
    return OpenAPI.from_file_path(str(SPEC_PATH))


class _SpecRequest:
    """An aiohttp request as openapi-core's Request protocol expects it."""

    host_url = SPEC_SERVER_URL

    def __init__(self, request: web.Request, body: bytes) -> None:
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(request.query.items())),
            header=Headers(list(request.headers.items())),
            cookie=ImmutableMultiDict(list(request.cookies.items())),
        )
        self.method = request.method.lower()
        self.path = request.path
        self.body = body or None
        self.content_type = request.content_type if body else ""


class _SpecResponse:
    """An aiohttp response as openapi-core's Response protocol expects it."""

    def __init__(self, response: web.Response) -> None:
        body = response.body
        self.data = body if isinstance(body, bytes) else b""
        self.status_code = response.status
        self.content_type = response.content_type if self.data else ""
        self.headers = Headers(list(response.headers.items()))


@dataclass(frozen=True)
class ValidationFailure:
    """One exchange that broke the OpenAPI file or the simulator's own contract."""

    method: str
    path_qs: str
    status: int
    problem: str

    def __str__(self) -> str:
        return f"{self.method} {self.path_qs} -> {self.status}: {self.problem}"


class OpenApiValidator:
    """Collect OpenAPI validation failures of the exchanges that pass through `middleware`."""

    def __init__(self, spec: OpenAPI | None = None) -> None:
        self.spec = spec or load_spec()
        self.failures: list[ValidationFailure] = []
        self.checked = 0
        self.skipped = 0

    @property
    def middleware(self) -> Middleware:
        @web.middleware
        async def validate_exchange(request: web.Request, handler: Handler) -> web.StreamResponse:
            response = await handler(request)
            if request.get(DROPPED_KEY) or FAULT_HEADER in response.headers:
                self.skipped += 1
                return response
            # Read the body only now: aiohttp returns the copy the handler read, and reading it
            # before the handler would turn an oversized body into aiohttp's own 413.
            try:
                body = await request.read()
            except web.HTTPException:
                self.skipped += 1
                return response
            self.checked += 1
            for problem in self.problems(request, body, response):
                self.failures.append(
                    ValidationFailure(
                        request.method,
                        request.path_qs,
                        response.status,
                        problem[:_MAX_PROBLEM_CHARS],
                    )
                )
            return response

        return validate_exchange

    def problems(
        self, request: web.Request, body: bytes, response: web.StreamResponse
    ) -> list[str]:
        """Return what is wrong with one exchange; an empty list means it is valid."""
        if not isinstance(response, web.Response):
            return [f"expected a complete web.Response, got {type(response).__name__}"]
        problems = _header_problems(response) + _error_body_problems(response)
        spec_request = _SpecRequest(request, body)
        try:
            self.spec.validate_request(spec_request)
        except OpenAPIError as error:
            if response.status < 400:
                problems.append(
                    f"request is invalid ({_describe(error)}) but got a success response"
                )
        try:
            self.spec.validate_response(spec_request, _SpecResponse(response))
        except PathError:
            # Unknown paths and methods have no declared response; the checks above apply.
            pass
        except OpenAPIError as error:
            problems.append(f"response does not match the OpenAPI file: {_describe(error)}")
        return problems

    def assert_no_failures(self) -> None:
        """Raise AssertionError listing every failure collected so far."""
        if self.failures:
            listed = "\n".join(f"  {failure}" for failure in self.failures)
            raise AssertionError(
                f"{len(self.failures)} simulator exchanges broke the OpenAPI file:\n{listed}"
            )


def _header_problems(response: web.Response) -> list[str]:
    return [
        f"header {name} is missing" for name in REQUIRED_HEADERS if name not in response.headers
    ]


def _error_body_problems(response: web.Response) -> list[str]:
    if response.status < 400:
        return []
    body = response.body if isinstance(response.body, bytes) else b""
    try:
        payload = json.loads(body)
    except ValueError:
        return [f"error body is not JSON: {body[:80]!r}"]
    if not isinstance(payload, dict):
        return ["error body is not a JSON object"]
    return [
        f"error body has no string {key!r}"
        for key in ("id", "message", "request_id")
        if not isinstance(payload.get(key), str)
    ]


def _describe(error: BaseException) -> str:
    cause = error.__cause__
    text = f"{type(error).__name__}: {error}"
    if cause is not None and str(cause) not in text:
        text += f" ({cause})"
    return text
