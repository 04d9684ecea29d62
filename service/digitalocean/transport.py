"""HTTP requests to the DigitalOcean API: pacing, retries and error translation.

This is the only module that calls aiohttp. It turns every aiohttp failure and every non-2xx
response into one of the errors in `errors.py`, and classifies them there. A 429 is retried after
the wait that DigitalOcean requests. 5xx responses, timeouts and dropped connections are retried
with exponential backoff and full jitter, but only for requests that are safe to repeat
(`RetryMode.IDEMPOTENT`). A POST (`RetryMode.SEND_ONCE`) is repeated only when it certainly did
not reach DigitalOcean: after a 429 or a failed connect.
"""

from __future__ import annotations

import asyncio
import enum
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import structlog
from pydantic import SecretStr
from yarl import URL

from service.digitalocean.errors import (
    ApiConnectionError,
    AuthenticationError,
    BadRequestError,
    DigitalOceanError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    ServerError,
)
from service.digitalocean.ratelimit import RateLimiter, RateLimits, wait_after_429
from service.logging import REDACTED

log = structlog.get_logger(__name__)

# Server text quoted in an error message is cut to this many characters.
MAX_QUOTED_CHARS = 300

ResponseHook = Callable[[str, int, float, int | None], None]
"""Called after every response with (operation, status, elapsed_s, ratelimit-remaining)."""


class Operation(enum.StrEnum):
    """The ten API operations; the value is the name used in logs, stats and errors."""

    LIST_SCANS = "list_scans"
    CREATE_SCAN = "create_scan"
    GET_LATEST_SCAN = "get_latest_scan"
    GET_SCAN = "get_scan"
    LIST_AFFECTED_RESOURCES = "list_affected_resources"
    CREATE_FALSE_POSITIVE = "create_false_positive"
    GET_SETTINGS = "get_settings"
    UPDATE_PLAN = "update_plan"
    CREATE_SUPPRESSION = "create_suppression"
    DELETE_SUPPRESSION = "delete_suppression"


# Token scope each operation needs, from DigitalOcean's API reference for the Security operations.
_SCOPES = {
    Operation.LIST_SCANS: "security:read",
    Operation.CREATE_SCAN: "security:create",
    Operation.GET_LATEST_SCAN: "security:read",
    Operation.GET_SCAN: "security:read",
    Operation.LIST_AFFECTED_RESOURCES: "security:read",
    Operation.CREATE_FALSE_POSITIVE: "security:create",
    Operation.GET_SETTINGS: "security:read",
    Operation.UPDATE_PLAN: "security:update",
    Operation.CREATE_SUPPRESSION: "security:create",
    Operation.DELETE_SUPPRESSION: "security:delete",
}

_NOT_FOUND_HINTS = {
    Operation.GET_SCAN: "check the scan id",
    Operation.LIST_AFFECTED_RESOURCES: "check the scan id and the finding's rule_uuid",
    Operation.DELETE_SUPPRESSION: "check the suppression id in the team's security settings",
    Operation.GET_LATEST_SCAN: "run a scan first",
}


class RetryMode(enum.Enum):
    IDEMPOTENT = "idempotent"  # GET, PUT, DELETE: repeat after any retryable failure
    SEND_ONCE = "send_once"  # POST: repeat only when the request certainly did not arrive


@dataclass(slots=True)
class ClientStats:
    """Counters of one client: requests by operation and status, 429s met, retries made.

    A request that got no response counts under a failure name instead of a status:
    `timeout` or `connection_error`.
    """

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    rate_limited: int = 0
    retries: int = 0

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def requests_for(self, operation: str) -> int:
        """Return the number of requests of one operation, whatever their outcome."""
        return sum(count for (name, _), count in self.requests.items() if name == operation)


@dataclass(frozen=True, slots=True)
class ApiResponse:
    operation: Operation
    status: int
    headers: Mapping[str, str]
    body: bytes
    attempts: int
    origin: str

    @property
    def request_id(self) -> str | None:
        return self.headers.get("x-request-id") or None

    def json(self) -> object:
        """Decode the body as JSON; raise InvalidResponseError naming the operation otherwise."""
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError) as error:
            # RecursionError: arrays or objects nested deeper than the parser's stack allows.
            raise InvalidResponseError(
                f"{self.operation} returned HTTP {self.status} with a body that is not JSON "
                f"({_brief(str(error))}): check that api_url {self.origin} is the DigitalOcean "
                "API and try again",
                operation=self.operation,
                status=self.status,
                message=_brief(str(error)),
                request_id=self.request_id,
            ) from None


class _Unsent(Exception):
    """No response: `sent` is False when the connection failed before the request went out."""

    def __init__(self, kind: str, detail: str, *, sent: bool, retryable: bool = True) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.sent = sent
        self.retryable = retryable


class Transport:
    """One aiohttp session to one API origin, shared by all operations of a client."""

    def __init__(
        self,
        *,
        token: SecretStr,
        origin: URL,
        limiter: RateLimiter,
        limits: RateLimits,
        max_concurrency: int,
        timeout_s: float,
        max_retries: int,
        retry_backoff_s: float,
        user_agent: str,
        stats: ClientStats,
        on_response: ResponseHook | None,
    ) -> None:
        self._token = token
        self.origin = origin
        self._limiter = limiter
        self._limits = limits
        self._max_concurrency = max_concurrency
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.max_retries = max_retries
        self._retry_backoff_s = retry_backoff_s
        self._user_agent = user_agent
        self.stats = stats
        self._on_response = on_response
        self._session: aiohttp.ClientSession | None = None
        self._concurrency: asyncio.Semaphore | None = None

    async def open(self) -> None:
        if self._session is not None:
            return
        # The pool has as many connections as requests may be in flight, so a request never
        # waits for a pooled connection inside its timeout.
        connector = aiohttp.TCPConnector(limit=self._max_concurrency)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        # aiohttp 3.x silently sends GET, PUT and DELETE a second time when the connection drops
        # (ClientSession._retry_connection, with no public switch in 3.14). This client retries
        # on its own, counting every attempt: a DELETE that meets 404 on its first attempt is a
        # wrong id, on a later one an earlier attempt's success.
        # NOTE: if aiohttp renames the attribute, the hidden repeat returns; the test of a
        # DELETE dropped after deleting then fails.
        if hasattr(self._session, "_retry_connection"):
            self._session._retry_connection = False
        self._concurrency = asyncio.Semaphore(self._max_concurrency)

    async def close(self) -> None:
        if self._session is None:
            return
        session, self._session = self._session, None
        await session.close()

    def backoff_s(self, attempt: int) -> float:
        """Return a full-jitter backoff: uniform in [0, base * 2**attempt], at most 30 s."""
        ceiling_s = min(30.0, self._retry_backoff_s * 2**attempt)
        return random.uniform(0, ceiling_s)

    async def request(
        self,
        operation: Operation,
        method: str,
        url: URL,
        *,
        json_body: object = None,
        mode: RetryMode = RetryMode.IDEMPOTENT,
        pass_statuses: Collection[int] = (),
    ) -> ApiResponse:
        """Send one API request, retrying as `mode` allows, and return its 2xx response.

        Statuses in `pass_statuses` are returned instead of raised. Raises DigitalOceanError
        subclasses for everything else.
        """
        self._check_origin(url)
        last_kind = ""
        for attempt in range(self.max_retries + 1):
            attempts = attempt + 1
            try:
                response = await self._send(operation, method, url, json_body, attempts)
            except _Unsent as unsent:
                error: DigitalOceanError = self._unsent_error(operation, unsent, attempts, mode)
                if not self._may_retry_unsent(unsent, mode, attempt):
                    raise error from None
                kind, delay_s = unsent.kind, self.backoff_s(attempt)
            else:
                if response.status < 400 or response.status in pass_statuses:
                    self._log_recovery(operation, attempts)
                    return response
                error = self._http_error(response)
                retry_delay_s = self._retry_delay_s(response, mode, attempt)
                if retry_delay_s is None:
                    raise error
                kind, delay_s = str(response.status), retry_delay_s
            self._log_retry(operation, error, attempts, delay_s, changed=kind != last_kind)
            last_kind = kind
            self.stats.retries += 1
            await asyncio.sleep(delay_s)
        raise AssertionError("unreachable: the last attempt raises")  # pragma: no cover

    def http_error(self, response: ApiResponse) -> DigitalOceanError:
        """Translate a non-2xx response into the matching error."""
        return self._http_error(response)

    async def _send(
        self,
        operation: Operation,
        method: str,
        url: URL,
        json_body: object,
        attempts: int,
    ) -> ApiResponse:
        if self._session is None or self._concurrency is None:
            raise RuntimeError(
                "the SecurityClient is not open: use `async with SecurityClient(...)`"
            )
        async with self._concurrency, self._limiter.slot():
            started_s = time.monotonic()
            try:
                status, headers, body = await self._exchange(method, url, json_body)
            except _Unsent as unsent:
                self.stats.requests[(operation, unsent.kind)] += 1
                log.debug(
                    "request_failed",
                    operation=operation,
                    method=method,
                    path=url.path,
                    error=unsent.detail,
                )
                raise
            elapsed_s = time.monotonic() - started_s
            remaining = _header_int(headers, "ratelimit-remaining")
            self._limiter.record_budget(remaining, _header_int(headers, "ratelimit-reset"))
        self._record(operation, method, url, status, elapsed_s, remaining)
        return ApiResponse(operation, status, headers, body, attempts, str(self.origin))

    async def _exchange(
        self, method: str, url: URL, json_body: object
    ) -> tuple[int, Mapping[str, str], bytes]:
        assert self._session is not None
        request_headers = {
            "Authorization": f"Bearer {self._token.get_secret_value()}",
            "User-Agent": self._user_agent,
            "Accept": "application/json",
        }
        try:
            async with self._session.request(
                method, url, json=json_body, headers=request_headers
            ) as response:
                body = await response.read()
                headers = {key.lower(): value for key, value in response.headers.items()}
                return response.status, headers, body
        except TimeoutError:
            raise _Unsent(
                "timeout", f"timed out after {self._timeout.total} s", sent=True
            ) from None
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError) as error:
            raise _Unsent(
                "connection_error", f"TLS failed: {error}", sent=False, retryable=False
            ) from None
        except aiohttp.ClientConnectorError as error:
            raise _Unsent("connection_error", f"could not connect: {error}", sent=False) from None
        except aiohttp.ClientPayloadError as error:
            raise _Unsent(
                "connection_error", f"response body cut off: {error}", sent=True
            ) from None
        except (aiohttp.ClientError, OSError) as error:
            detail = f"connection dropped: {type(error).__name__} {error}".strip()
            raise _Unsent("connection_error", detail, sent=True) from None

    def _record(
        self,
        operation: Operation,
        method: str,
        url: URL,
        status: int,
        elapsed_s: float,
        remaining: int | None,
    ) -> None:
        self.stats.requests[(operation, str(status))] += 1
        if status == 429:
            self.stats.rate_limited += 1
        log.debug(
            "request_completed",
            operation=operation,
            method=method,
            path=url.path,
            page=url.query.get("page"),
            status=status,
            elapsed_s=round(elapsed_s, 3),
            ratelimit_remaining=remaining,
        )
        if self._on_response is None:
            return
        try:
            self._on_response(operation.value, status, elapsed_s, remaining)
        except Exception:  # a broken metrics hook must not fail the API call it observes
            log.warning("response_hook_failed", operation=operation, exc_info=True)

    def _may_retry_unsent(self, unsent: _Unsent, mode: RetryMode, attempt: int) -> bool:
        if attempt >= self.max_retries or not unsent.retryable:
            return False
        return mode is RetryMode.IDEMPOTENT or not unsent.sent

    def _retry_delay_s(self, response: ApiResponse, mode: RetryMode, attempt: int) -> float | None:
        """Return the wait before repeating a failed response, or None when it is final."""
        if attempt >= self.max_retries:
            return None
        if response.status == 429:
            wait_s = self._rate_limit_wait_s(response, attempt)
            if wait_s > self._limits.max_wait_s:
                return None
            # Every request of the token waits, not only this one.
            self._limiter.pause_for(wait_s)
            return wait_s
        if response.status >= 500 and mode is RetryMode.IDEMPOTENT:
            return self.backoff_s(attempt)
        return None

    def _rate_limit_wait_s(self, response: ApiResponse, attempt: int) -> float:
        return wait_after_429(
            response.headers, now_epoch_s=time.time(), backoff_s=self.backoff_s(attempt)
        )

    def _check_origin(self, url: URL) -> None:
        if url.origin() != self.origin:
            raise ValueError(
                f"rejected a request to {url.origin()}: the token is sent only to the "
                f"configured api_url {self.origin}"
            )

    def _unsent_error(
        self, operation: Operation, unsent: _Unsent, attempts: int, mode: RetryMode
    ) -> ApiConnectionError:
        detail = self._quote(unsent.detail)
        outcome_unknown = unsent.sent and mode is RetryMode.SEND_ONCE
        if outcome_unknown:
            text = (
                f"{operation} failed after the request was sent ({detail}), so DigitalOcean "
                "may have applied it: check the result before sending it again"
            )
        else:
            text = (
                f"{operation} got no response from {self.origin} after {attempts} attempt(s) "
                f"({detail}): check the network path to api_url and try again"
            )
        return ApiConnectionError(
            text, operation=operation, message=detail, outcome_unknown=outcome_unknown
        )

    def _http_error(self, response: ApiResponse) -> DigitalOceanError:
        operation, status = response.operation, response.status
        error_id, message, request_id = self._error_fields(response)
        fields: dict[str, Any] = {
            "operation": operation,
            "error_id": error_id,
            "message": message,
            "request_id": request_id,
        }
        quoted = _describe_error(status, error_id, message, request_id)
        if status in (401, 403):
            return AuthenticationError(
                f"{operation} was rejected ({quoted}): check that the token is valid and has "
                f"the {_SCOPES[operation]} scope",
                status=status,
                **fields,
            )
        if status == 404:
            hint = _NOT_FOUND_HINTS.get(operation, f"check that api_url {self.origin} is right")
            return NotFoundError(
                f"{operation} found nothing ({quoted}): {hint}", status=404, **fields
            )
        if status == 429:
            retry_after_s = (
                wait_after_429(response.headers, now_epoch_s=time.time(), backoff_s=0.0) or None
            )
            return RateLimitedError(
                f"{operation} stayed rate limited after {response.attempts} attempt(s) "
                f"({quoted}): wait {retry_after_s or 60:.0f} s or make fewer requests with "
                "this token",
                retry_after_s=retry_after_s,
                **fields,
            )
        if status >= 500:
            return self._server_error(response, quoted, fields)
        if status in (400, 409, 422):
            return BadRequestError(
                f"{operation} was rejected as invalid ({quoted}): correct the request as the "
                "message says",
                status=status,
                **fields,
            )
        return DigitalOceanError(
            f"{operation} failed with an unexpected response ({quoted}): check that api_url "
            f"{self.origin} is the DigitalOcean API",
            status=status,
            **fields,
        )

    def _server_error(
        self, response: ApiResponse, quoted: str, fields: dict[str, Any]
    ) -> ServerError:
        operation = response.operation
        if operation in (
            Operation.CREATE_SCAN,
            Operation.CREATE_SUPPRESSION,
            Operation.CREATE_FALSE_POSITIVE,
        ):
            return ServerError(
                f"{operation} failed ({quoted}), so DigitalOcean may have applied it: check the "
                "result before sending it again",
                status=response.status,
                outcome_unknown=True,
                **fields,
            )
        return ServerError(
            f"{operation} failed after {response.attempts} attempt(s) ({quoted}): DigitalOcean "
            "is having trouble, so try again later",
            status=response.status,
            **fields,
        )

    def _error_fields(self, response: ApiResponse) -> tuple[str | None, str | None, str | None]:
        """Return DigitalOcean's error id, message and request id from an error response."""
        try:
            body = json.loads(response.body)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            text = response.body.decode("utf-8", errors="replace").strip()
            return None, self._quote(text) or None, response.request_id
        error_id = body.get("id") if isinstance(body.get("id"), str) else None
        message = body.get("message") if isinstance(body.get("message"), str) else None
        request_id = body.get("request_id") if isinstance(body.get("request_id"), str) else None
        return (
            error_id,
            self._quote(message) if message else None,
            request_id or response.request_id,
        )

    def _quote(self, text: str) -> str:
        """Cut server or library text for a message, with the token removed if it was echoed."""
        secret = self._token.get_secret_value()
        if secret:
            text = text.replace(secret, REDACTED)
        return _brief(text)

    def _log_retry(
        self,
        operation: Operation,
        error: DigitalOceanError,
        attempts: int,
        delay_s: float,
        *,
        changed: bool,
    ) -> None:
        # A retry is a WARNING when its cause differs from the last one; repeats go to DEBUG.
        emit = log.warning if changed else log.debug
        emit(
            "request_retried",
            operation=operation,
            attempt=attempts,
            max_attempts=self.max_retries + 1,
            status=error.status,
            error=error.message or type(error).__name__,
            delay_s=round(delay_s, 3),
        )

    def _log_recovery(self, operation: Operation, attempts: int) -> None:
        if attempts > 1:
            log.info("request_recovered", operation=operation, attempts=attempts)


def _describe_error(
    status: int, error_id: str | None, message: str | None, request_id: str | None
) -> str:
    parts = [f"HTTP {status}"]
    if error_id:
        parts.append(error_id)
    if message:
        parts.append(repr(message))
    if request_id:
        parts.append(f"request id {request_id}")
    return ", ".join(parts)


def _brief(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= MAX_QUOTED_CHARS:
        return text
    return text[: MAX_QUOTED_CHARS - 3] + "..."


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None
