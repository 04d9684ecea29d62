"""Async client of the DigitalOcean Security (CSPM) API."""

from service.digitalocean.client import (
    DEFAULT_API_URL,
    FindingStream,
    SecurityClient,
)
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
from service.digitalocean.models import Collected, CollectedScan
from service.digitalocean.pagination import PageStream
from service.digitalocean.ratelimit import RateLimiter, RateLimits
from service.digitalocean.transport import ClientStats, Operation, ResponseHook

__all__ = [
    "DEFAULT_API_URL",
    "ApiConnectionError",
    "AuthenticationError",
    "BadRequestError",
    "ClientStats",
    "Collected",
    "CollectedScan",
    "DigitalOceanError",
    "FindingStream",
    "InvalidResponseError",
    "NotFoundError",
    "Operation",
    "PageStream",
    "RateLimitedError",
    "RateLimiter",
    "RateLimits",
    "ResponseHook",
    "SecurityClient",
    "ServerError",
]
