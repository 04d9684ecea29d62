"""structlog set-up and secret redaction.

Every log line goes through `redact_secrets`, which removes values under secret-looking keys and
any registered secret value wherever it appears, so a token never reaches a log even when it is
part of a URL or an exception message.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

REDACTED = "[REDACTED]"

_SECRET_KEY_PATTERN = re.compile(
    r"(token|secret|password|passwd|authorization|api_key|webhook_url|signature)", re.IGNORECASE
)
# Values that look like credentials even when nobody registered them: DigitalOcean tokens, Slack
# tokens and webhook URLs, Standard Webhooks secrets, passwords inside database URLs.
_SECRET_VALUE_PATTERNS = (
    re.compile(r"\bdo[por]_v1_[A-Za-z0-9]{16,}"),
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]+"),
    re.compile(r"https://hooks\.slack\.com/[^\s\"']+"),
    re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"),
    re.compile(r"(?<=://)([^:/@\s]+):([^@/\s]+)@"),
)

_registered_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Redact `value` from every later log line. Values shorter than 6 characters are ignored,
    because redacting them would mangle ordinary words."""
    if value and len(value) >= 6:
        with _lock:
            _registered_secrets.add(value)


def redact_text(text: str) -> str:
    """Replace every registered secret and every credential-looking value in `text`."""
    with _lock:
        secrets = sorted(_registered_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern in _SECRET_VALUE_PATTERNS:
        text = pattern.sub(_replacement_for(pattern), text)
    return text


def _replacement_for(pattern: re.Pattern[str]) -> str:
    # The database-URL pattern keeps the user name and drops only the password.
    if pattern.groups == 2:
        return rf"\1:{REDACTED}@"
    return REDACTED


def _redact_value(key: str, value: Any) -> Any:
    if _SECRET_KEY_PATTERN.search(key) and value not in (None, "", REDACTED):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    if isinstance(value, BaseException):
        return redact_text(repr(value))
    return value


def redact_secrets(
    _logger: Any, _method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor that removes secrets by key and by value."""
    for key in list(event_dict):
        event_dict[key] = _redact_value(key, event_dict[key])
    return event_dict


def configure_logging(*, level: str = "INFO", json: bool | None = None) -> None:
    """Configure structlog and the standard library's logging to print one line per event.

    `json=None` picks JSON when standard error is not a terminal and readable console output
    when it is. Logs of aiohttp, apscheduler, sqlalchemy and alembic go through the same
    renderer.
    """
    if json is None:
        json = not sys.stderr.isatty()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if json:
        renderer = structlog.processors.JSONRenderer()
        final: list[Any] = [structlog.processors.dict_tracebacks, redact_secrets, renderer]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        final = [redact_secrets, renderer]

    structlog.configure(
        processors=[
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


_NOISY_LIBRARIES: Iterable[str] = ("aiohttp.access", "apscheduler", "sqlalchemy.engine", "alembic")
