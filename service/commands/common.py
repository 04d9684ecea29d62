"""Helpers shared by the commands: target selection, API client, database and input checks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.commands.output import print_note
from service.config import Settings, TargetSettings
from service.digitalocean.client import SecurityClient
from service.errors import ConfigError, CspmWatchError, StorageError
from service.storage import (
    create_engine,
    create_sessionmaker,
    database_revision,
    mask_database_url,
    parse_database_url,
)


class CommandError(CspmWatchError):
    """Error of a command that cannot do what was requested. The message gives the reason and
    what to do instead."""


def pick_target(settings: Settings, name: str | None) -> TargetSettings:
    """Return the target called `name`, or the only target when `name` is None.

    Raise ConfigError listing the configured names when `name` is unknown, or when it is
    None and several targets are configured.
    """
    if name is not None:
        return settings.target(name)
    if len(settings.targets) == 1:
        return settings.targets[0]
    names = ", ".join(target.name for target in settings.targets)
    raise ConfigError(
        f"{len(settings.targets)} targets are configured ({names}): choose one with --target NAME"
    )


@asynccontextmanager
async def open_client(settings: Settings, target: TargetSettings) -> AsyncIterator[SecurityClient]:
    """Open an API client with the target's token and API URL."""
    client = SecurityClient(target.token, api_url=str(settings.api_url_for(target)))
    async with client:
        yield client


@asynccontextmanager
async def open_database(
    settings: Settings,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Open the configured database for reading and writing, without migrating it.

    Raise StorageError when a SQLite file does not exist (rather than creating an empty one)
    or when the database has no cspm-watch tables yet.
    """
    url = settings.database_url
    _require_sqlite_file(url)
    if await database_revision(url) is None:
        raise StorageError(
            f"database {mask_database_url(url)} has no cspm-watch tables: run "
            "`cspm-watch db upgrade`, or `cspm-watch once` to record a first scan"
        )
    engine = create_engine(url)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


def _require_sqlite_file(url: str) -> None:
    parsed = parse_database_url(url)
    if parsed.get_backend_name() != "sqlite":
        return
    path = Path(parsed.database or "").expanduser()
    if not path.is_file():
        raise StorageError(
            f"database file {str(path)!r} does not exist: check database_url, or run "
            "`cspm-watch once` to record a first scan"
        )


def warn_incomplete(subject: str, problems: Sequence[str]) -> None:
    """Tell on standard error that `subject` may miss items, with each reason."""
    print_note(f"warning: {subject} may be incomplete")
    for problem in problems:
        print_note(f"  {problem}")
