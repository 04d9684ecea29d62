"""The asyncio engine and session factory for SQLite (aiosqlite) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import URL, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from service.errors import ConfigError, StorageError
from service.logging import redact_text

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///cspm-watch.db"

# How long a SQLite connection waits for another connection's write lock before it fails with
# "database is locked". Writes of the service are short, so this is generous.
SQLITE_BUSY_TIMEOUT_MS = 30_000

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgresql+psycopg_async": "postgresql+psycopg",
}


def parse_database_url(url: str | URL) -> URL:
    """Parse a database URL and map it to the asyncio driver of its database.

    Accept `sqlite+aiosqlite:///PATH`, `postgresql+psycopg://...` and the plain `sqlite:///PATH`,
    `postgresql://...` and `postgres://...` forms. Raise ConfigError, with any password masked,
    for anything else and for in-memory SQLite, which would lose every row when the
    connection closes.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        # Only the scheme is shown, because in text that does not parse as a URL the password
        # cannot be located and masked.
        scheme = str(url).partition("://")[0] if "://" in str(url) else "no scheme"
        raise ConfigError(
            f"invalid database_url ({scheme}): expected a URL such as {DEFAULT_DATABASE_URL} "
            "or postgresql+psycopg://USER:PASSWORD@HOST:5432/DATABASE"
        ) from None

    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    if driver is None:
        raise ConfigError(
            f"unsupported database_url {mask_database_url(parsed)!r}: use sqlite+aiosqlite:///PATH "
            "or postgresql+psycopg://USER:PASSWORD@HOST:5432/DATABASE"
        )
    parsed = parsed.set(drivername=driver)
    if driver == "sqlite+aiosqlite" and parsed.database in (None, "", ":memory:"):
        raise ConfigError(
            f"database_url {mask_database_url(parsed)!r} names an in-memory SQLite database, "
            "which loses every row when its connection closes: give a file path, for example "
            f"{DEFAULT_DATABASE_URL}"
        )
    return parsed


def mask_database_url(url: str | URL) -> str:
    """Return the URL as text with its password replaced, safe to log or print."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return redact_text(url)


def create_engine(url: str | URL, **engine_options: Any) -> AsyncEngine:
    """Create the asyncio engine for `url` (see `parse_database_url` for the accepted forms).

    SQLite connections run in WAL mode with a busy timeout and foreign keys on, so the cycle,
    the dispatcher and the command line can read while one of them writes. Raise ConfigError
    when the URL is not usable or the SQLite file's directory does not exist.
    """
    parsed = parse_database_url(url)
    if parsed.get_backend_name() == "sqlite":
        _require_sqlite_directory(parsed)
        engine = _create_async_engine(parsed, **engine_options)
        event.listen(engine.sync_engine, "connect", _configure_sqlite_connection)
        return engine
    engine_options.setdefault("pool_pre_ping", True)
    return _create_async_engine(parsed, **engine_options)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Create the session factory. Objects stay readable after a commit (no expiry)."""
    return async_sessionmaker(engine, expire_on_commit=False)


def _require_sqlite_directory(url: URL) -> None:
    """Raise StorageError unless the SQLite file can be created or written where it is.

    SQLite itself only says "unable to open database file", which names neither the path nor
    the fix. SQLite also writes its -wal and -shm files beside the database, so the directory
    must be writable as well.
    """
    path = Path(url.database or "").expanduser().resolve()
    directory = path.parent
    where = f"database_url {mask_database_url(url)!r}"
    if not directory.is_dir():
        raise StorageError(
            f"directory {str(directory)!r} of {where} does not exist: create it or point "
            "database_url at an existing directory"
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StorageError(
            f"directory {str(directory)!r} of {where} is not writable: SQLite writes the "
            "database and its -wal and -shm files there, so give this user write access or "
            "choose another directory"
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StorageError(
            f"database file {str(path)!r} of {where} is not readable and writable by this "
            "user: fix its permissions or choose another file"
        )


def _configure_sqlite_connection(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets readers continue while one connection writes. synchronous=NORMAL is safe in
        # WAL mode: a power loss can drop the last commits but never corrupts the file.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()
