"""structlog set-up and secret redaction.

Every log line goes through `redact_secrets`, which removes values under secret-looking keys and
any registered secret value wherever it appears, so a token never reaches a log even when it is
part of a URL or an exception message. Exceptions are turned into data (JSON) or one line of
text (console) before that step, so their messages are redacted too.

Each event is exactly one line: JSON when standard error is not a terminal, `key=value` text on
a terminal. The standard library's loggers (aiohttp, apscheduler, sqlalchemy, alembic), Python
warnings and uncaught exceptions go through the same processors and renderer.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from collections.abc import Iterable, MutableMapping
from types import TracebackType
from typing import Any, TextIO

import structlog

REDACTED = "[REDACTED]"

_SECRET_KEY_PATTERN = re.compile(
    r"(token|secret|password|passwd|authorization|api_?key|webhook_url|signature|credential"
    r"|private_key|cookie)",
    re.IGNORECASE,
)
# Values that look like credentials even when no caller registered them, each with its
# replacement: DigitalOcean tokens, Slack tokens and webhook URLs, Standard Webhooks secrets,
# bearer credentials, secret-looking query parameters and passwords inside URLs.
_SECRET_VALUE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\bdo[por]_v1_[A-Za-z0-9]{16,}"), REDACTED),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]+"), REDACTED),
    (re.compile(r"\bxapp-[0-9]+-[A-Za-z0-9-]+"), REDACTED),
    (re.compile(r"https://hooks\.slack\.com/[^\s\"']+"), REDACTED),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"), REDACTED),
    (re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE), rf"\1 {REDACTED}"),
    (
        re.compile(
            r"([?&](?:access_token|token|api_key|apikey|key|secret|signature|sig|password)=)"
            r"[^&#\s\"']+",
            re.IGNORECASE,
        ),
        rf"\1{REDACTED}",
    ),
    # The user name stays, so that a log still shows which account failed.
    (re.compile(r"(?<=://)([^:/@\s]+):([^@/\s]+)@"), rf"\1:{REDACTED}@"),
)

# The console shows at most this many stack frames of an exception, innermost last.
CONSOLE_TRACEBACK_FRAMES = 8

_NOISY_LIBRARIES: Iterable[str] = ("aiohttp.access", "apscheduler", "sqlalchemy.engine", "alembic")

_registered_secrets: set[str] = set()
_lock = threading.Lock()

log = structlog.get_logger(__name__)


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
    for pattern, replacement in _SECRET_VALUE_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


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


def format_exception_line(
    _logger: Any, _method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor that replaces `exc_info` with a one-line `traceback` text.

    The text is `Type: message` with up to `CONSOLE_TRACEBACK_FRAMES` frames as
    `file:line in function`, innermost last, and the chained cause after `caused by`. The
    console renderer would print `exception` and `stack` below the line, so they move to
    `traceback` and `stack_trace`.
    """
    for source, target in (("exception", "traceback"), ("stack", "stack_trace")):
        if source in event_dict:
            event_dict[target] = event_dict.pop(source)
    exc_info = _exception_info(event_dict.pop("exc_info", None))
    if exc_info is None:
        return event_dict
    error: BaseException | None = exc_info[1]
    parts: list[str] = []
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        parts.append(_describe_exception(error))
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    event_dict["traceback"] = " <- caused by ".join(parts)
    return event_dict


def _exception_info(value: Any) -> tuple[type[BaseException], BaseException, Any] | None:
    if isinstance(value, BaseException):
        return type(value), value, value.__traceback__
    if isinstance(value, tuple) and len(value) == 3 and isinstance(value[1], BaseException):
        return value
    if value is True:
        current = sys.exc_info()
        if current[1] is not None:
            return current
    return None


def _describe_exception(error: BaseException) -> str:
    message = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    frames = traceback.extract_tb(error.__traceback__)[-CONSOLE_TRACEBACK_FRAMES:]
    if not frames:
        return message
    where = "; ".join(f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in frames)
    return f"{message} (at {where})"


def _escape_line_breaks(
    _logger: Any, _method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    # The console renderer prints strings as they are; a line break would split the event.
    for key, value in event_dict.items():
        if isinstance(value, str) and ("\n" in value or "\r" in value):
            event_dict[key] = value.replace("\r", "\\r").replace("\n", "\\n")
    return event_dict


def configure_logging(
    *, level: str = "INFO", json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Configure structlog and the standard library's logging to write one line per event.

    `json=None` picks JSON when `stream` (standard error by default) is not a terminal and
    readable console output when it is. Logs of aiohttp, apscheduler, sqlalchemy and alembic go
    through the same renderer, at WARNING and above. Python warnings and uncaught exceptions
    in the main thread and in other threads are logged as events too.
    """
    output = stream if stream is not None else sys.stderr
    if json is None:
        json = not output.isatty()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    final: list[Any]
    if json:
        tracebacks = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        # Locals are left out: they can hold secrets in forms no pattern recognises.
        final = [tracebacks, redact_secrets, structlog.processors.JSONRenderer()]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False, pad_event_to=24)
        final = [format_exception_line, redact_secrets, _escape_line_breaks, renderer]

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
    handler = logging.StreamHandler(output)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _NOISY_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught_exception
    threading.excepthook = _log_uncaught_thread_exception


def _log_uncaught_exception(
    exc_type: type[BaseException], error: BaseException, trace: TracebackType | None
) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, error, trace)
        return
    log.critical("uncaught_exception", exc_info=(exc_type, error, trace))


def _log_uncaught_thread_exception(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or issubclass(args.exc_type, SystemExit):
        return
    thread = args.thread.name if args.thread is not None else None
    log.critical(
        "uncaught_exception",
        thread=thread,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
