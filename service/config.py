"""Settings models, YAML and environment loading, and validation.

`load_settings` reads the YAML configuration file, lets `CSPM_WATCH_<KEY>` environment variables
override its top-level keys, resolves every secret from its variable or file, and validates the
result. Any problem raises `ConfigError`, which lists every problem found with the key path, the
value (secrets masked) and the fix. Without a configuration file, `DIGITALOCEAN_TOKEN` and the
notifier variables describe a single target named `default`.

Secrets never appear in the configuration file itself: a key such as `token_env` names the
environment variable and `token_file` names the file that contains the secret. The resolved
value is a `SecretStr` on a `SecretSource`, which prints as the variable name or the path.
"""

from __future__ import annotations

import base64
import binascii
import enum
import os
import re
import string
import uuid
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, tzinfo
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from apscheduler.triggers.cron import CronTrigger
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)
from pydantic_settings.sources.utils import parse_env_vars

from service.digitalocean.models import Severity
from service.errors import ConfigError
from service.logging import redact_text, register_secret

ENV_PREFIX = "CSPM_WATCH_"
CONFIG_PATH_VARIABLE = "CSPM_WATCH_CONFIG"
MASK = "****"

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///cspm-watch.db"
DEFAULT_API_URL = "https://api.digitalocean.com"
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
# The schedule of the target built from environment variables alone: every 6 hours, on the hour,
# in UTC.
DEFAULT_CRON = "0 */6 * * *"

# A secret file larger than this is a wrong path (a log, a binary), not a token or a key.
SECRET_FILE_MAX_BYTES = 64 * 1024
# Standard Webhooks 1.0.0, "Signature scheme": a symmetric signing secret is random, at least
# 24 bytes and at most 512 bits, serialized as base64 behind the prefix `whsec_`.
WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - a format prefix, not a secret
WEBHOOK_SECRET_MIN_BYTES = 24
WEBHOOK_SECRET_MAX_BYTES = 64

NOTIFIER_TYPES = ("slack", "slack_webhook", "webhook", "console")

_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Only conventional upper-case names are repeated in messages, because a value that is not one
# may be the secret itself, pasted where its variable's name belongs.
_DISPLAYABLE_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
_URN = re.compile(r"do:[a-z_]+:\S+")
_SLACK_CHANNEL = re.compile(r"#[a-z0-9][a-z0-9._-]{0,79}|[CGD][A-Z0-9]{6,}")
_SECRET_KEY = re.compile(r"(token|secret|password|passwd)(?!_env|_file)", re.IGNORECASE)


# ---------------------------------------------------------------------------------------------
# Load context: the environment and the file's directory that secrets are resolved against.


@dataclass(frozen=True)
class _LoadContext:
    environ: Mapping[str, str]
    file_data: Mapping[str, Any]
    base_dir: Path


_load_context: ContextVar[_LoadContext | None] = ContextVar("cspm_watch_config", default=None)


def _current_environ() -> Mapping[str, str]:
    context = _load_context.get()
    return os.environ if context is None else context.environ


def _current_base_dir() -> Path:
    context = _load_context.get()
    return Path.cwd() if context is None else context.base_dir


# ---------------------------------------------------------------------------------------------
# Secrets


@dataclass(frozen=True)
class SecretSource:
    """A secret resolved at load: where it came from and its value.

    `kind` is "env" or "file"; `reference` is the variable name or the path. Printing the
    object shows only the reference.
    """

    kind: Literal["env", "file"]
    reference: str
    value: SecretStr = field(repr=False)

    def __str__(self) -> str:
        return self.reference


def _display_env_name(name: str) -> str:
    return name if _DISPLAYABLE_ENV_NAME.fullmatch(name) else MASK


def _resolve_env_secret(value: object) -> SecretSource:
    if isinstance(value, SecretSource):
        return value
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value.strip()):
        raise ValueError(
            "expected the name of an environment variable (letters, digits and underscores, "
            "such as DIGITALOCEAN_TOKEN), not the secret itself"
        )
    name = value.strip()
    displayed_name = _display_env_name(name)
    environ = _current_environ()
    if name not in environ:
        raise ValueError(
            f"environment variable {displayed_name} is not set: set it to the secret, or use the "
            "matching *_file key to read the secret from a file"
        )
    secret = environ[name].strip()
    if not secret:
        raise ValueError(f"environment variable {displayed_name} is empty: set it to the secret")
    _reject_inner_whitespace(secret, f"environment variable {displayed_name}")
    return SecretSource("env", name, SecretStr(secret))


def _reject_inner_whitespace(secret: str, where: str) -> None:
    # Tokens, webhook URLs and signing secrets never contain whitespace; a line break inside
    # one is a copy-paste error that DigitalOcean or Slack would only report as a bad token.
    if any(char.isspace() for char in secret):
        raise ValueError(
            f"{where} contains whitespace or a line break inside the secret: keep only the "
            "secret itself, on one line"
        )


def _resolve_file_secret(value: object) -> SecretSource:
    if isinstance(value, SecretSource):
        return value
    if not isinstance(value, str | Path) or not str(value).strip():
        raise ValueError("expected the path of a file that contains the secret")
    path = Path(str(value).strip()).expanduser()
    if not path.is_absolute():
        path = _current_base_dir() / path
    secret = _read_secret_file(path)
    return SecretSource("file", str(path), SecretStr(secret))


def _read_secret_file(path: Path) -> str:
    # Opening a FIFO would block until something writes to it, so only regular files are read.
    if path.exists() and not path.is_file() and not path.is_dir():
        raise ValueError(f"secret file {path} is not a regular file: give the path of a file")
    try:
        with path.open("rb") as file:
            raw = file.read(SECRET_FILE_MAX_BYTES + 1)
    except FileNotFoundError:
        raise ValueError(
            f"secret file {path} does not exist: create it or correct the path"
        ) from None
    except IsADirectoryError:
        raise ValueError(
            f"secret file {path} is a directory: give the path of the file inside it"
        ) from None
    except PermissionError:
        raise ValueError(
            f"secret file {path} is not readable by user id {os.getuid()}: grant read access "
            "to this user or mount the file with other permissions"
        ) from None
    except OSError as error:
        raise ValueError(f"secret file {path} could not be read: {error.strerror}") from None

    if len(raw) > SECRET_FILE_MAX_BYTES:
        raise ValueError(
            f"secret file {path} is larger than {SECRET_FILE_MAX_BYTES // 1024} KiB, so it is "
            "not a secret: correct the path"
        )
    try:
        secret = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ValueError(f"secret file {path} is not UTF-8 text: correct the path") from None
    if not secret:
        raise ValueError(f"secret file {path} is empty: write the secret into it")
    _reject_inner_whitespace(secret, f"secret file {path}")
    return secret


def _describe_source(source: SecretSource) -> str:
    if source.kind == "env":
        return f"environment variable {_display_env_name(source.reference)}"
    return f"secret file {source.reference}"


def _check_webhook_secret(source: SecretSource) -> SecretSource:
    """Check the Standard Webhooks format of a signing secret without echoing it."""
    where = _describe_source(source)
    secret = source.value.get_secret_value()
    if not secret.startswith(WEBHOOK_SECRET_PREFIX):
        raise ValueError(
            f"the signing secret in {where} does not start with {WEBHOOK_SECRET_PREFIX}: use a "
            f"Standard Webhooks secret, {WEBHOOK_SECRET_PREFIX} followed by base64 of "
            f"{WEBHOOK_SECRET_MIN_BYTES} to {WEBHOOK_SECRET_MAX_BYTES} random bytes"
        )
    try:
        key = base64.b64decode(secret.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            f"the signing secret in {where} is not valid base64 after {WEBHOOK_SECRET_PREFIX}: "
            "generate one with: echo whsec_$(openssl rand -base64 32)"
        ) from None
    if not WEBHOOK_SECRET_MIN_BYTES <= len(key) <= WEBHOOK_SECRET_MAX_BYTES:
        raise ValueError(
            f"the signing secret in {where} decodes to {len(key)} bytes: Standard Webhooks "
            f"secrets have {WEBHOOK_SECRET_MIN_BYTES} to {WEBHOOK_SECRET_MAX_BYTES} bytes; "
            "generate one with: echo whsec_$(openssl rand -base64 32)"
        )
    return source


def _check_secret_http_url(source: SecretSource) -> SecretSource:
    """Check that a secret contains an http(s) URL, without echoing the URL."""
    parts = urlsplit(source.value.get_secret_value())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{_describe_source(source)} does not contain an http(s) URL: set it to the "
            "incoming webhook URL that Slack shows for the app"
        )
    return source


def _serialize_secret_source(source: SecretSource) -> str:
    return source.reference


EnvSecret = Annotated[
    SecretSource, PlainValidator(_resolve_env_secret), PlainSerializer(_serialize_secret_source)
]
FileSecret = Annotated[
    SecretSource, PlainValidator(_resolve_file_secret), PlainSerializer(_serialize_secret_source)
]


def _require_one_of(data: Any, first: str, second: str, *, required: bool = True) -> Any:
    """Reject a mapping that sets both keys, or neither when one is `required`."""
    if not isinstance(data, Mapping):
        return data
    present = [key for key in (first, second) if data.get(key) is not None]
    if len(present) == 2:
        raise ValueError(f"{first} and {second} are mutually exclusive: set only one of them")
    if required and not present:
        raise ValueError(f"set one of {first} or {second}")
    return data


# ---------------------------------------------------------------------------------------------
# Values: URLs, severities, cron expressions, time zones, names


def mask_url(url: str) -> str:
    """Return `url` with its password and query values replaced by ****.

    A value with an @ but without a scheme is not parsed reliably, so all of it is masked.
    """
    if "://" not in url:
        return MASK if "@" in url else url
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return MASK
    if password is None and not parts.query:
        return url
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{MASK}@{hostport}"
    masked = f"{parts.scheme}://{netloc}{parts.path}"
    if parts.query:
        masked += "?" + "&".join(
            f"{pair.partition('=')[0]}={MASK}" for pair in parts.query.split("&")
        )
    return masked + (f"#{parts.fragment}" if parts.fragment else "")


def _validate_http_url(value: str) -> str:
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        port = None
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"{mask_url(value)!r} is not an http(s) URL: write it as https://host[:port]/path"
        )
    if port == 0:
        raise ValueError(f"{mask_url(value)!r} has port 0: give a port from 1 to 65535")
    return value.strip()


def _validate_api_url(value: str) -> str:
    """Accept a DigitalOcean API base URL: http(s), no credentials, no query or fragment.

    The token goes in a header; a user name, password or query in the base URL would be sent
    with every request and printed by `config check`.
    """
    value = _validate_http_url(value)
    parts = urlsplit(value)
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"{mask_url(value)!r} contains a user name or password: remove them, the "
            "DigitalOcean token goes in token_env or token_file"
        )
    if parts.query or parts.fragment:
        raise ValueError(
            f"{mask_url(value)!r} has a query or fragment: give the base URL only, such as "
            f"{DEFAULT_API_URL}"
        )
    return value


def _strip_trailing_slash(value: str) -> str:
    return value.rstrip("/")


def _ensure_trailing_slash(value: str) -> str:
    return value if value.endswith("/") else value + "/"


HttpUrl = Annotated[str, AfterValidator(_validate_http_url)]
ApiUrl = Annotated[str, AfterValidator(_validate_api_url), AfterValidator(_strip_trailing_slash)]
SlackApiUrl = Annotated[
    str, AfterValidator(_validate_http_url), AfterValidator(_ensure_trailing_slash)
]


def _parse_severity(value: object) -> Severity:
    if isinstance(value, Severity):
        return value
    if not isinstance(value, str):
        raise ValueError(f"invalid severity {value!r}: expected one of LOW, MEDIUM, HIGH, CRITICAL")
    return Severity.parse(value)


SeverityLevel = Annotated[
    Severity, PlainValidator(_parse_severity), PlainSerializer(lambda level: level.value)
]


def _validate_slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        raise ValueError(
            f"invalid name {value!r}: use 1 to 63 lower-case letters, digits and hyphens, "
            "starting and ending with a letter or digit, such as 'production'"
        )
    return value


Slug = Annotated[str, AfterValidator(_validate_slug)]


def parse_timezone(name: str) -> tzinfo:
    """Return the time zone with the IANA name `name`; raise ValueError naming it otherwise."""
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as UTC, Europe/Berlin or "
            "America/New_York"
        ) from None


_CRON_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_CRON_FIELDS = ("minute", "hour", "day", "month", "day_of_week")
# Standard cron numbers weekdays from Sunday (0, and 7 again); APScheduler 3 numbers them from
# Monday, so day-of-week values are passed to it as names.
_CRON_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_CRON_HELP = (
    "use five fields (minute hour day-of-month month day-of-week), such as '0 */6 * * *', "
    "or one of " + ", ".join(_CRON_MACROS)
)


def parse_cron(expression: str) -> dict[str, str]:
    """Translate a standard crontab expression into APScheduler 3 `CronTrigger` fields.

    Accepts five fields or a macro such as @daily. Day-of-week numbers follow crontab (0 and 7
    are Sunday), unlike APScheduler's own `from_crontab`. An expression that restricts both
    day-of-month and day-of-week is rejected: crontab runs it when either matches, APScheduler
    only when both do. Raises ValueError with the expression and the fix.
    """
    text = _CRON_MACROS.get(expression.strip().lower(), expression.strip().lower())
    values = text.split()
    if len(values) != len(_CRON_FIELDS):
        raise ValueError(
            f"invalid cron expression {expression!r}: it has {len(values)} fields; {_CRON_HELP}"
        )
    fields = dict(zip(_CRON_FIELDS, values, strict=True))
    if not fields["day"].startswith("*") and not fields["day_of_week"].startswith("*"):
        raise ValueError(
            f"invalid cron expression {expression!r}: it restricts both day-of-month and "
            "day-of-week, which crontab and APScheduler read differently; restrict only one "
            "and write * in the other"
        )
    try:
        fields["day_of_week"] = _weekday_names(fields["day_of_week"])
        CronTrigger(**fields, timezone=UTC)
    except ValueError as error:
        raise ValueError(f"invalid cron expression {expression!r}: {error}; {_CRON_HELP}") from None
    return fields


def _weekday_names(field_text: str) -> str:
    if field_text == "*":
        return field_text
    days: set[int] = set()
    for item in field_text.split(","):
        days.update(_weekday_numbers(item))
    return ",".join(_CRON_WEEKDAYS[day] for day in sorted(days))


def _weekday_numbers(item: str) -> list[int]:
    base, _, step_text = item.partition("/")
    step = int(step_text) if step_text.isdigit() else None
    if step_text and not step:
        raise ValueError(f"day-of-week step {step_text!r} must be a whole number above 0")
    if base == "*":
        first, last = 0, 6
    elif "-" in base:
        first_text, _, last_text = base.partition("-")
        first, last = _weekday_number(first_text), _weekday_number(last_text)
    else:
        first = _weekday_number(base)
        last = 7 if step else first
    if last < first:
        raise ValueError(f"day-of-week range {base!r} runs backwards; write it as first-last")
    return sorted({day % 7 for day in range(first, last + 1, step or 1)})


def _weekday_number(text: str) -> int:
    if text in _CRON_WEEKDAYS:
        return _CRON_WEEKDAYS.index(text)
    if text.isdigit() and int(text) <= 7:
        return int(text)
    raise ValueError(f"day of week {text!r} is not 0-7 or a name such as mon")


def _parse_listen(value: str) -> tuple[str, int]:
    host, separator, port_text = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    valid_host = bool(host) and not any(char in host for char in string.whitespace + "/@")
    if not separator or not valid_host or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(
            f"invalid listen address {value!r}: write host:port with a port from 0 to 65535, "
            "such as 0.0.0.0:8080 or [::]:8080"
        )
    return host, int(port_text)


def _validate_listen(value: str) -> str:
    _parse_listen(value)
    return value


def _normalize_database_url(value: str) -> str:
    """Pick the asyncio drivers that the service ships for plain SQLite and PostgreSQL URLs."""
    scheme, separator, rest = value.strip().partition("://")
    if not separator:
        raise ValueError(
            f"invalid database URL {mask_url(value)!r}: write it as "
            "sqlite+aiosqlite:///path.db or postgresql+psycopg://user:password@host/database"
        )
    drivers = {
        "sqlite": "sqlite+aiosqlite",
        "sqlite+aiosqlite": "sqlite+aiosqlite",
        "postgres": "postgresql+psycopg",
        "postgresql": "postgresql+psycopg",
        "postgresql+psycopg": "postgresql+psycopg",
    }
    driver = drivers.get(scheme.lower())
    if driver is None:
        raise ValueError(
            f"unsupported database URL scheme {scheme!r}: use sqlite+aiosqlite:// or "
            "postgresql+psycopg://"
        )
    return f"{driver}://{rest}"


# ---------------------------------------------------------------------------------------------
# Models


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FirstScanPolicy(enum.Enum):
    """The message policy of a target's first completed scan: one summary, every alert, or none."""

    SUMMARY = "summary"
    ALERT = "alert"
    SILENT = "silent"


class ScheduleSettings(_Section):
    """The run times of a target's cycle: a cron expression in `timezone`, or an interval."""

    cron: str | None = None
    interval_s: int | None = Field(default=None, ge=1)
    timezone: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _check_exclusive(cls, data: Any) -> Any:
        _require_one_of(data, "cron", "interval_s")
        if (
            isinstance(data, Mapping)
            and data.get("interval_s") is not None
            and data.get("timezone")
        ):
            raise ValueError(
                "timezone and interval_s are mutually exclusive: an interval counts elapsed "
                "seconds, so remove timezone or use cron"
            )
        return data

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, value: str | None) -> str | None:
        if value is not None:
            parse_cron(value)
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str | None) -> str | None:
        if value is not None:
            parse_timezone(value)
        return value

    @property
    def zone(self) -> tzinfo:
        """The time zone of the cron expression: `timezone`, or UTC when it is unset."""
        return UTC if self.timezone is None else parse_timezone(self.timezone)


class PollSettings(_Section):
    """Polling of a running scan: intervals that double from initial to max, until the timeout."""

    initial_interval_s: float = Field(default=5.0, gt=0)
    max_interval_s: float = Field(default=60.0, gt=0)
    timeout_s: float = Field(default=1800.0, gt=0)

    @model_validator(mode="after")
    def _check_order(self) -> PollSettings:
        if self.initial_interval_s > self.max_interval_s:
            raise ValueError(
                f"initial_interval_s ({self.initial_interval_s:g}) is above max_interval_s "
                f"({self.max_interval_s:g}): lower initial_interval_s or raise max_interval_s"
            )
        return self


class AlertSettings(_Section):
    """The alert policy of a target: the diff entries that become alerts and their notifiers."""

    min_severity: SeverityLevel = Severity.HIGH
    on_first_scan: FirstScanPolicy = FirstScanPolicy.SUMMARY
    notify_resolved: bool = False
    # Names under the top-level `notifiers`. Left out, it means every configured notifier.
    notifiers: list[str] = Field(default_factory=list)
    failure_alert_after: int = Field(default=3, ge=1)

    @field_validator("on_first_scan", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value


class TargetSettings(_Section):
    """One DigitalOcean team to watch: its API token, schedule, polling and alert settings."""

    name: Slug
    token_env: EnvSecret | None = None
    token_file: FileSecret | None = None
    api_url: ApiUrl | None = None
    schedule: ScheduleSettings = Field(default_factory=lambda: ScheduleSettings(cron=DEFAULT_CRON))
    poll: PollSettings = Field(default_factory=PollSettings)
    resource_detail_min_severity: SeverityLevel = Severity.LOW
    alerts: AlertSettings = Field(default_factory=AlertSettings)

    @model_validator(mode="before")
    @classmethod
    def _check_exclusive(cls, data: Any) -> Any:
        return _require_one_of(data, "token_env", "token_file")

    @property
    def token(self) -> SecretStr:
        """The DigitalOcean API token."""
        return _first_secret(self.token_env, self.token_file)


def _first_secret(*sources: SecretSource | None) -> SecretStr:
    for source in sources:
        if source is not None:
            return source.value
    # Unreachable after validation, which requires one source.
    raise ConfigError("internal error: a setting has no secret source although one is required")


class SlackNotifierSettings(_Section):
    """A notifier that posts with a Slack bot token through the Web API (chat.postMessage)."""

    type: Literal["slack"] = "slack"
    token_env: EnvSecret | None = None
    token_file: FileSecret | None = None
    channel: str
    api_url: SlackApiUrl = DEFAULT_SLACK_API_URL
    min_severity: SeverityLevel = Severity.LOW

    @model_validator(mode="before")
    @classmethod
    def _check_exclusive(cls, data: Any) -> Any:
        return _require_one_of(data, "token_env", "token_file")

    @field_validator("channel")
    @classmethod
    def _check_channel(cls, value: str) -> str:
        if not _SLACK_CHANNEL.fullmatch(value):
            raise ValueError(
                f"invalid Slack channel {value!r}: write '#name' in lower case (quote it in YAML, "
                "where # starts a comment) or a channel ID such as C0123456789"
            )
        return value

    @property
    def token(self) -> SecretStr:
        """The Slack bot token (xoxb-...)."""
        return _first_secret(self.token_env, self.token_file)


class SlackWebhookNotifierSettings(_Section):
    """A notifier that posts to a Slack incoming webhook, whose URL is the secret."""

    type: Literal["slack_webhook"] = "slack_webhook"
    url_env: EnvSecret | None = None
    url_file: FileSecret | None = None
    min_severity: SeverityLevel = Severity.LOW

    @model_validator(mode="before")
    @classmethod
    def _check_exclusive(cls, data: Any) -> Any:
        return _require_one_of(data, "url_env", "url_file")

    @field_validator("url_env", "url_file")
    @classmethod
    def _check_url(cls, value: SecretSource | None) -> SecretSource | None:
        return None if value is None else _check_secret_http_url(value)

    @property
    def url(self) -> SecretStr:
        """The incoming webhook URL."""
        return _first_secret(self.url_env, self.url_file)


class WebhookNotifierSettings(_Section):
    """A notifier that POSTs JSON to a URL, signed as Standard Webhooks describe.

    A signing secret is required, so that receivers can reject forged alerts.
    """

    type: Literal["webhook"] = "webhook"
    url: HttpUrl
    secret_env: EnvSecret | None = None
    secret_file: FileSecret | None = None
    min_severity: SeverityLevel = Severity.LOW
    timeout_s: float = Field(default=10.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _check_exclusive(cls, data: Any) -> Any:
        return _require_one_of(data, "secret_env", "secret_file")

    @field_validator("secret_env", "secret_file")
    @classmethod
    def _check_secret(cls, value: SecretSource | None) -> SecretSource | None:
        return None if value is None else _check_webhook_secret(value)

    @property
    def secret(self) -> SecretStr:
        """The whsec_ signing secret."""
        return _first_secret(self.secret_env, self.secret_file)


class ConsoleNotifierSettings(_Section):
    """A notifier that prints messages to standard output."""

    type: Literal["console"] = "console"
    min_severity: SeverityLevel = Severity.LOW


NotifierSettings = Annotated[
    SlackNotifierSettings
    | SlackWebhookNotifierSettings
    | WebhookNotifierSettings
    | ConsoleNotifierSettings,
    Field(discriminator="type"),
]


class MuteSettings(_Section):
    """A local mute: findings of a rule and/or on a resource raise no alert until it expires."""

    rule_uuid: str | None = None
    resource_urn: str | None = None
    target: str | None = None
    reason: str = Field(min_length=1)
    expires_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _check_subject(self) -> MuteSettings:
        if self.rule_uuid is None and self.resource_urn is None:
            raise ValueError("a mute needs rule_uuid, resource_urn or both: add at least one")
        return self

    @field_validator("reason")
    @classmethod
    def _check_reason(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("reason is blank: say why the finding is muted")
        return value.strip()

    @field_validator("rule_uuid")
    @classmethod
    def _check_rule_uuid(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(uuid.UUID(value))
        except ValueError:
            raise ValueError(
                f"invalid rule UUID {value!r}: copy the finding's rule_uuid, such as "
                "760e09ef-dc84-11e8-981e-3cfdfeaae000"
            ) from None

    @field_validator("resource_urn")
    @classmethod
    def _check_urn(cls, value: str | None) -> str | None:
        if value is not None and not _URN.fullmatch(value):
            raise ValueError(
                f"invalid resource URN {value!r}: copy the affected resource's urn, such as "
                "do:droplet:123"
            )
        return value

    @field_validator("expires_at")
    @classmethod
    def _to_utc(cls, value: AwareDatetime | None) -> AwareDatetime | None:
        return None if value is None else value.astimezone(UTC)


class RetentionSettings(_Section):
    """Retention periods of stored data. The daily retention job deletes what is older."""

    # Findings and affected resources of older scans are deleted; the scan rows stay.
    scan_details_days: int = Field(default=90, ge=1)
    # Sent and failed deliveries older than this are deleted.
    deliveries_days: int = Field(default=30, ge=1)
    # Time of day, HH:MM in UTC, at which the retention job runs.
    run_time_utc: str = "03:30"

    @field_validator("run_time_utc")
    @classmethod
    def _check_time(cls, value: str) -> str:
        hour, separator, minute = value.partition(":")
        valid = separator and hour.isdigit() and minute.isdigit() and len(minute) == 2
        if not valid or int(hour) > 23 or int(minute) > 59:
            raise ValueError(f"invalid time {value!r}: write HH:MM in UTC, such as '03:30'")
        return f"{int(hour):02d}:{minute}"


class DispatchSettings(_Section):
    """The interval at which the daemon sends pending deliveries from the outbox."""

    interval_s: int = Field(default=30, ge=1)


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class Settings(BaseSettings):
    """The whole configuration of the service, validated and with every secret resolved."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="forbid",
    )

    database_url: Annotated[str, AfterValidator(_normalize_database_url)] = DEFAULT_DATABASE_URL
    api_url: ApiUrl = DEFAULT_API_URL
    # Every interface by default, because in a container the health and metrics endpoints are
    # reached from outside.
    listen: Annotated[str, AfterValidator(_validate_listen)] = "0.0.0.0:8080"
    log_level: LogLevel = "INFO"
    migrate_on_start: bool = True
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    dispatch: DispatchSettings = Field(default_factory=DispatchSettings)
    targets: list[TargetSettings] = Field(min_length=1)
    notifiers: dict[Slug, NotifierSettings] = Field(default_factory=dict)
    mutes: list[MuteSettings] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Rank the sources: arguments, then CSPM_WATCH_* variables, then the YAML file."""
        context = _load_context.get()
        if context is None:
            return init_settings, env_settings
        return (
            init_settings,
            _MappingEnvSource(settings_cls, context.environ),
            _FileDataSource(settings_cls, context.file_data),
        )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_references(self) -> Settings:
        problems = [
            *self._duplicate_target_problems(),
            *self._notifier_reference_problems(),
            *self._mute_target_problems(),
        ]
        if problems:
            raise PydanticCustomError(
                "config_references",
                "{count} references are invalid",
                {"count": len(problems), "problems": problems},
            )
        for target in self.targets:
            if "notifiers" not in target.alerts.model_fields_set:
                target.alerts.notifiers = list(self.notifiers)
        return self

    def _duplicate_target_problems(self) -> Iterator[tuple[str, str]]:
        first_index: dict[str, int] = {}
        for index, target in enumerate(self.targets):
            if target.name in first_index:
                yield (
                    f"targets[{index}].name",
                    f"target name {target.name!r} is already used by "
                    f"targets[{first_index[target.name]}]: give each target its own name",
                )
            first_index.setdefault(target.name, index)

    def _notifier_reference_problems(self) -> Iterator[tuple[str, str]]:
        known = ", ".join(self.notifiers) or "none are defined"
        for index, target in enumerate(self.targets):
            for position, name in enumerate(target.alerts.notifiers):
                if name not in self.notifiers:
                    yield (
                        f"targets[{index}].alerts.notifiers[{position}]",
                        f"notifier {name!r} is not defined: define it under notifiers or use "
                        f"one of the defined names ({known})",
                    )

    def _mute_target_problems(self) -> Iterator[tuple[str, str]]:
        names = [target.name for target in self.targets]
        for index, mute in enumerate(self.mutes):
            if mute.target is not None and mute.target not in names:
                yield (
                    f"mutes[{index}].target",
                    f"target {mute.target!r} is not defined: use one of {', '.join(names)} or "
                    "remove target to mute on every target",
                )

    @property
    def listen_host(self) -> str:
        return _parse_listen(self.listen)[0]

    @property
    def listen_port(self) -> int:
        return _parse_listen(self.listen)[1]

    def api_url_for(self, target: TargetSettings) -> str:
        """Return the DigitalOcean API URL of `target`: its own, else the top-level one."""
        return target.api_url or self.api_url

    def target(self, name: str) -> TargetSettings:
        """Return the target called `name`; raise ConfigError listing the names otherwise."""
        for target in self.targets:
            if target.name == name:
                return target
        names = ", ".join(target.name for target in self.targets)
        raise ConfigError(f"target {name!r} is not configured: use one of {names}")

    def masked_dict(self) -> dict[str, Any]:
        """Return the effective configuration as JSON-ready data with every secret masked.

        Secret keys show the variable name or file path, never the secret; passwords and query
        values inside URLs show as ****.
        """
        data = self.model_dump(mode="json", exclude_none=True)
        data["database_url"] = mask_url(self.database_url)
        for index, target in enumerate(self.targets):
            entry = data["targets"][index] | {"api_url": self.api_url_for(target)}
            if target.schedule.cron is not None:
                entry["schedule"]["timezone"] = str(target.schedule.zone)
            data["targets"][index] = {
                key: entry[key] for key in type(target).model_fields if key in entry
            }
        for name, notifier in self.notifiers.items():
            if isinstance(notifier, WebhookNotifierSettings):
                data["notifiers"][name]["url"] = mask_url(notifier.url)
        return data

    def secrets(self) -> list[SecretStr]:
        """Return every resolved secret, for redaction from logs."""
        sources: list[SecretSource | None] = []
        for target in self.targets:
            sources += [target.token_env, target.token_file]
        for notifier in self.notifiers.values():
            sources += [getattr(notifier, key, None) for key in _NOTIFIER_SECRET_KEYS]
        return [source.value for source in sources if source is not None]


_NOTIFIER_SECRET_KEYS = (
    "token_env",
    "token_file",
    "url_env",
    "url_file",
    "secret_env",
    "secret_file",
)


class _MappingEnvSource(EnvSettingsSource):
    """The CSPM_WATCH_* variables of a given mapping, not only of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


class _FileDataSource(PydanticBaseSettingsSource):
    """The parsed configuration file, unknown keys included so that validation rejects them."""

    def __init__(self, settings_cls: type[BaseSettings], data: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = dict(data)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


# ---------------------------------------------------------------------------------------------
# Loading


def load_settings(path: Path | None, environ: Mapping[str, str] = os.environ) -> Settings:
    """Load, resolve and validate the configuration.

    `path` is the YAML file; None falls back to CSPM_WATCH_CONFIG, and without that to a single
    target built from DIGITALOCEAN_TOKEN and the notifier variables (see `_data_from_environment`).
    CSPM_WATCH_<KEY> variables in `environ` override top-level keys. Relative secret file paths
    are resolved against the configuration file's directory. Every resolved secret is
    registered for redaction from logs.

    Raises ConfigError that lists every problem found.
    """
    if path is None and environ.get(CONFIG_PATH_VARIABLE):
        path = Path(environ[CONFIG_PATH_VARIABLE])
    if path is None:
        origin = "no configuration file, settings from environment variables"
        data = _data_from_environment(environ)
        base_dir = Path.cwd()
    else:
        origin = f"configuration file {path}"
        data = read_config_file(path)
        base_dir = path.parent.resolve()

    token = _load_context.set(_LoadContext(environ, data, base_dir))
    try:
        settings = Settings()
    except ValidationError as error:
        raise _config_error(origin, _describe_validation_error(error, environ)) from None
    except SettingsError as error:
        raise _config_error(origin, [_describe_settings_error(error)]) from None
    finally:
        _load_context.reset(token)

    for secret in settings.secrets():
        register_secret(secret.get_secret_value())
    _register_url_password(settings.database_url)
    return settings


def _register_url_password(url: str) -> None:
    try:
        register_secret(urlsplit(url).password)
    except ValueError:
        return


def _config_error(origin: str, problems: list[str]) -> ConfigError:
    count = f"{len(problems)} problem" + ("" if len(problems) == 1 else "s")
    lines = [f"invalid configuration ({origin}), {count}:"]
    lines += [f"  - {redact_text(problem)}" for problem in problems]
    return ConfigError("\n".join(lines))


class _StrictLoader(yaml.SafeLoader):
    """A safe YAML loader that rejects duplicate keys instead of keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        first_line: dict[Any, int] = {}
        for key_node, _value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                seen = key in first_line
            except TypeError:
                continue  # The base constructor reports an unhashable key with its position.
            if seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first at line {first_line[key] + 1}): keep only one",
                    key_node.start_mark,
                )
            first_line[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_config_file(path: Path) -> dict[str, Any]:
    """Read the YAML configuration file; raise ConfigError with the line of a syntax error.

    Messages never quote the file's lines, because a secret pasted into the file must not be
    echoed.
    """
    origin = f"configuration file {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _config_error(
            origin, [f"{path} does not exist: correct --config or {CONFIG_PATH_VARIABLE}"]
        ) from None
    except IsADirectoryError:
        raise _config_error(origin, [f"{path} is a directory: give the YAML file's path"]) from None
    except PermissionError:
        raise _config_error(
            origin, [f"{path} is not readable by user id {os.getuid()}: grant read access"]
        ) from None
    except UnicodeDecodeError:
        raise _config_error(origin, [f"{path} is not UTF-8 text: save it as UTF-8"]) from None

    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader
    except RecursionError:
        raise _config_error(
            origin, ["invalid YAML: the structure is nested too deeply to be a configuration"]
        ) from None
    except yaml.MarkedYAMLError as error:
        raise _config_error(origin, [_describe_yaml_error(error)]) from None
    except yaml.YAMLError as error:
        raise _config_error(origin, [f"invalid YAML: {type(error).__name__}"]) from None

    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _config_error(
            origin,
            [
                f"the file holds a YAML {type(data).__name__}: write a mapping of keys at the top "
                "level, such as 'targets:'"
            ],
        )
    return data


def _describe_yaml_error(error: yaml.MarkedYAMLError) -> str:
    mark = error.problem_mark or error.context_mark
    where = "" if mark is None else f" at line {mark.line + 1}, column {mark.column + 1}"
    problem = error.problem or error.context or "syntax error"
    return f"invalid YAML{where}: {problem}"


def _data_from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    """Describe one target named `default` from environment variables alone.

    DIGITALOCEAN_TOKEN is its API token and the schedule is every 6 hours in UTC. Each notifier
    whose variables are set is added: SLACK_WEBHOOK_URL, SLACK_BOT_TOKEN with
    CSPM_WATCH_SLACK_CHANNEL, CSPM_WATCH_WEBHOOK_URL with the optional
    CSPM_WATCH_WEBHOOK_SECRET. With none of them, alerts go to a console notifier.
    """
    problems = []
    if not environ.get("DIGITALOCEAN_TOKEN", "").strip():
        problems.append(
            "DIGITALOCEAN_TOKEN is not set: set it to watch one team with default settings, or "
            f"pass --config PATH (or set {CONFIG_PATH_VARIABLE}) to use a configuration file"
        )
    notifiers: dict[str, dict[str, str]] = {}
    if environ.get("SLACK_WEBHOOK_URL"):
        notifiers["slack-webhook"] = {"type": "slack_webhook", "url_env": "SLACK_WEBHOOK_URL"}
    if environ.get("SLACK_BOT_TOKEN") or environ.get("CSPM_WATCH_SLACK_CHANNEL"):
        notifiers["slack"] = {
            "type": "slack",
            "token_env": "SLACK_BOT_TOKEN",
            "channel": environ.get("CSPM_WATCH_SLACK_CHANNEL", ""),
        }
        if not environ.get("CSPM_WATCH_SLACK_CHANNEL"):
            problems.append(
                "SLACK_BOT_TOKEN is set but CSPM_WATCH_SLACK_CHANNEL is not: set it to the "
                "channel to post to, such as #security"
            )
    if environ.get("CSPM_WATCH_WEBHOOK_URL"):
        notifiers["webhook"] = {
            "type": "webhook",
            "url": environ["CSPM_WATCH_WEBHOOK_URL"],
            "secret_env": "CSPM_WATCH_WEBHOOK_SECRET",
        }
        if not environ.get("CSPM_WATCH_WEBHOOK_SECRET"):
            problems.append(
                "CSPM_WATCH_WEBHOOK_URL is set but CSPM_WATCH_WEBHOOK_SECRET is not: set it to "
                "the receiver's signing secret, whsec_ followed by base64 of 24 to 64 bytes"
            )
    elif environ.get("CSPM_WATCH_WEBHOOK_SECRET"):
        problems.append(
            "CSPM_WATCH_WEBHOOK_SECRET is set but CSPM_WATCH_WEBHOOK_URL is not: set the URL "
            "that the signed requests go to"
        )
    if problems:
        raise _config_error("no configuration file, settings from environment variables", problems)
    if not notifiers:
        notifiers["console"] = {"type": "console"}
    target = {
        "name": "default",
        "token_env": "DIGITALOCEAN_TOKEN",
        "schedule": {"cron": DEFAULT_CRON},
    }
    return {"targets": [target], "notifiers": notifiers}


# ---------------------------------------------------------------------------------------------
# Error messages


_FIXES = {
    "missing": "add this key",
    "model_type": "write a mapping of keys",
    "dict_type": "write a mapping of keys",
    "list_type": "write a list, one item per line starting with '- '",
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "int_from_float": "write a whole number",
    "float_parsing": "write a number",
    "float_type": "write a number",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "string_type": "write a string, quoted if YAML reads it as another type",
    "literal_error": "use one of the listed values",
    "enum": "use one of the listed values",
    "union_tag_not_found": "add type: one of " + ", ".join(NOTIFIER_TYPES),
    "union_tag_invalid": "set type to one of " + ", ".join(NOTIFIER_TYPES),
    "timezone_aware": "add Z or an offset such as +00:00",
    "datetime_parsing": "write a time such as 2027-01-31T00:00:00Z",
    "datetime_type": "write a time such as 2027-01-31T00:00:00Z",
    "datetime_from_date_parsing": "write a time such as 2027-01-31T00:00:00Z",
    "too_short": "add at least one item",
}


def _describe_validation_error(error: ValidationError, environ: Mapping[str, str]) -> list[str]:
    problems: list[str] = []
    for detail in error.errors(include_url=False):
        if detail["type"] == "config_references":
            problems += [f"{path}: {text}" for path, text in detail["ctx"]["problems"]]
            continue
        problems.append(_describe_error_detail(detail, environ))
    return problems


def _describe_error_detail(detail: Any, environ: Mapping[str, str]) -> str:
    loc: tuple[str | int, ...] = detail["loc"]
    kind: str = detail["type"]
    path = format_key_path(loc) + _environment_note(loc, environ)

    if kind == "value_error":
        return f"{path}: {detail['ctx']['error']}"
    if kind == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(loc[:-1])) or "none"
        return f"{path}: unknown key; remove it or correct its spelling (allowed: {allowed})"

    message: str = detail["msg"]
    shown = _display_value(loc, detail.get("input"))
    got = f" (got {shown})" if shown is not None and kind != "missing" else ""
    fix = _FIXES.get(kind)
    return f"{path}: {message}{got}" + (f"; {fix}" if fix else "")


def format_key_path(loc: tuple[str | int, ...]) -> str:
    """Format a validation location as `targets[0].schedule.cron`, without union tags."""
    path = ""
    for index, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
        elif index == 2 and loc[0] == "notifiers" and part in (*NOTIFIER_TYPES, "[key]"):
            continue  # the notifier's type (the union's tag) or the marker of a dict key
        else:
            path += f".{part}" if path else str(part)
    return path or "(top level)"


def _environment_note(loc: tuple[str | int, ...], environ: Mapping[str, str]) -> str:
    """Name the CSPM_WATCH_* variable that set the value at `loc`, if one did."""
    names = {name.upper() for name in environ}
    for depth in range(len(loc), 0, -1):
        variable = ENV_PREFIX + "__".join(str(part) for part in loc[:depth]).upper()
        if variable in names:
            return f" (from {variable})"
    return ""


def _display_value(loc: tuple[str | int, ...], value: Any) -> str | None:
    """Return a short, safe rendering of a rejected scalar value, or None to show nothing."""
    if not isinstance(value, str | int | float):
        return None
    key = next((part for part in reversed(loc) if isinstance(part, str)), "")
    if _SECRET_KEY.search(key):
        return MASK
    text = mask_url(value) if isinstance(value, str) else str(value)
    text = redact_text(text)
    if len(text) > 80:
        text = text[:77] + "..."
    return repr(text) if isinstance(value, str) else text


def _allowed_keys(loc: tuple[str | int, ...]) -> list[str]:
    """Return the keys that the model at `loc` accepts, walking the Settings annotations."""
    current: Any = Settings
    for part in loc:
        current = _step_into(_unwrap(current), part)
        if current is None:
            return []
    model = _unwrap(current)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return sorted(model.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated and Optional wrappers from a type annotation."""
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, UnionType):
            members = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation


def _step_into(annotation: Any, part: str | int) -> Any:
    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        model_field = annotation.model_fields.get(str(part))
        return None if model_field is None else model_field.annotation
    if origin is list:
        return get_args(annotation)[0]
    if origin is dict:
        return get_args(annotation)[1]
    if origin in (Union, UnionType):
        for member in get_args(annotation):
            fields = getattr(member, "model_fields", {})
            if "type" in fields and fields["type"].default == part:
                return member
    return None


def _describe_settings_error(error: SettingsError) -> str:
    match = re.search(r'field "([a-z_]+)"', str(error))
    variable = f"{ENV_PREFIX}{match.group(1).upper()}" if match else f"a {ENV_PREFIX}* variable"
    return f"{variable} could not be parsed: write lists and mappings as JSON"
