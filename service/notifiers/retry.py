"""Retry decisions shared by every notifier and the dispatcher.

Notifiers classify each failure at their HTTP boundary into a `NotifierError` that is either
retryable (429, 5xx, timeouts, dropped connections) or final. The dispatcher turns retryable
errors into a later attempt with `backoff_delay_s`. Nothing here sleeps: delays are stored as the
delivery's `next_attempt_at`, so retries survive process restarts.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp

from service.errors import NotifierError

# A longer Retry-After is capped at this, so a receiver that requests a day of silence still
# gets a retry within the hour, and the attempt budget still bounds the total.
MAX_RETRY_AFTER_S = 3600.0

# HTTP statuses that mean "try again later" for any receiver (RFC 9110: 408 Request Timeout,
# 425 Too Early, 429 Too Many Requests; every 5xx).
_RETRYABLE_STATUSES = frozenset({408, 425, 429})


class MessageTooLongError(NotifierError):
    """The receiver rejected a message for its size; the dispatcher splits it and retries."""

    def __init__(self, message: str):
        super().__init__(message, retryable=False)


def retryable(reason: str, *, retry_after_s: float | None = None) -> NotifierError:
    """Build an error after which another attempt can succeed."""
    return NotifierError(reason, retryable=True, retry_after_s=retry_after_s)


def permanent(reason: str) -> NotifierError:
    """Build an error after which every further attempt would fail the same way."""
    return NotifierError(reason, retryable=False)


def is_retryable_status(status: int) -> bool:
    return status in _RETRYABLE_STATUSES or 500 <= status <= 599


def error_for_status(status: int, retry_after: str | None, what: str) -> NotifierError:
    """Classify an unsuccessful HTTP status from `what` (a receiver, never its URL)."""
    if is_retryable_status(status):
        return retryable(
            f"{what} answered HTTP {status}", retry_after_s=parse_retry_after(retry_after)
        )
    return permanent(f"{what} answered HTTP {status}")


def error_for_transport(error: BaseException, what: str) -> NotifierError:
    """Classify a failure to get any response. The exception's text is left out on purpose,
    because aiohttp puts the request URL in some messages and a webhook URL is a secret."""
    if isinstance(error, asyncio.TimeoutError | TimeoutError):
        return retryable(f"{what} did not answer in time")
    if isinstance(error, aiohttp.ClientError | ConnectionError):
        return retryable(f"connection to {what} failed ({type(error).__name__})")
    return permanent(f"sending to {what} failed ({type(error).__name__})")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay seconds or an HTTP date), capped at
    `MAX_RETRY_AFTER_S`; None when the header is missing or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    seconds: float | None
    try:
        seconds = float(text)
    except ValueError:
        seconds = _seconds_until_http_date(text, now or datetime.now(UTC))
    if seconds is None or seconds != seconds:  # NaN compares unequal to itself
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _seconds_until_http_date(text: str, now: datetime) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - now).total_seconds()


def backoff_delay_s(
    attempts: int,
    *,
    base_delay_s: float,
    max_delay_s: float,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Delay before the next attempt after `attempts` failed ones (1 for the first failure).

    A receiver's Retry-After is used as it is, because the receiver decides when it accepts
    requests again. Otherwise the delay is exponential with jitter: a random value between
    half and all of `base_delay_s * 2**(attempts-1)`, capped at `max_delay_s`, so that
    deliveries that failed together spread out.
    """
    if retry_after_s is not None:
        return retry_after_s
    generator = rng or random
    exponent = min(max(attempts - 1, 0), 30)
    ceiling_s = min(base_delay_s * (2**exponent), max_delay_s)
    return generator.uniform(ceiling_s / 2, ceiling_s)
