"""Errors of the DigitalOcean Security API client, one type per kind of failure.

The client raises only these. Each carries the operation, the HTTP status (None when no response
arrived), DigitalOcean's error id and message, and the request id from the body or the
`x-request-id` header, so that a support ticket can quote it. No message contains the token.
"""

from __future__ import annotations

from service.errors import CspmWatchError


class DigitalOceanError(CspmWatchError):
    """A DigitalOcean Security API call failed.

    `message` is DigitalOcean's own message (or a description of the transport failure);
    `str(error)` is a full sentence that names the operation and the next step.
    `outcome_unknown` is True when the request may have been applied although it failed, which
    matters for the POST operations that the client does not repeat.
    """

    def __init__(
        self,
        text: str,
        *,
        operation: str,
        status: int | None = None,
        error_id: str | None = None,
        message: str | None = None,
        request_id: str | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(text)
        self.operation = operation
        self.status = status
        self.error_id = error_id
        self.message = message
        self.request_id = request_id
        self.outcome_unknown = outcome_unknown

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(operation={self.operation!r}, status={self.status!r}, "
            f"error_id={self.error_id!r}, request_id={self.request_id!r})"
        )


class AuthenticationError(DigitalOceanError):
    """HTTP 401 or 403: the token is invalid, expired or lacks the operation's scope."""


class NotFoundError(DigitalOceanError):
    """HTTP 404: the scan, finding or suppression does not exist for this token's team."""


class BadRequestError(DigitalOceanError):
    """HTTP 400, 409 or 422: DigitalOcean rejected the request's parameters or body."""


class RateLimitedError(DigitalOceanError):
    """HTTP 429 persisted through every retry, or requested a longer wait than the client allows.

    `retry_after_s` is the wait DigitalOcean requested, when it gave one.
    """

    def __init__(
        self,
        text: str,
        *,
        operation: str,
        retry_after_s: float | None = None,
        error_id: str | None = None,
        message: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(
            text,
            operation=operation,
            status=429,
            error_id=error_id,
            message=message,
            request_id=request_id,
        )
        self.retry_after_s = retry_after_s


class ServerError(DigitalOceanError):
    """HTTP 5xx persisted through every retry, or came from a request the client does not repeat."""


class ApiConnectionError(DigitalOceanError):
    """No response arrived: a timeout, a refused or dropped connection, a cut-off body."""


class InvalidResponseError(DigitalOceanError):
    """A 2xx response whose body is not the documented JSON: not JSON, wrong shape, wrong types."""
