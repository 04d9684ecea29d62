"""Column types shared by the tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from service.errors import StorageError


def ensure_utc(value: datetime, name: str) -> datetime:
    """Return `value` converted to UTC; raise StorageError naming `name` if it is naive."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise StorageError(
            f"{name} is a naive datetime ({value.isoformat()}): give it a timezone, "
            "for example datetime.now(UTC)"
        )
    return value.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime that is stored as UTC and read back as aware UTC.

    PostgreSQL keeps it in `timestamp with time zone`. SQLite has no such type, and SQLAlchemy
    stores its DATETIME as text without an offset, so the value is converted to UTC before it
    is written and the offset is added back when it is read. Text in one fixed format, all in
    UTC, also sorts in time order. Naive datetimes are rejected, because their instant is
    unknown.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        utc_value = ensure_utc(value, "a datetime column value")
        if dialect.name == "sqlite":
            return utc_value.replace(tzinfo=None)
        return utc_value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise StorageError(f"expected a datetime from the database, got {value!r}")
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
