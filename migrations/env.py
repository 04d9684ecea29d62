"""Alembic environment of cspm-watch.

`service.storage.migrate` runs the migrations on a connection it passes in
`config.attributes["connection"]`. Run by hand (`alembic upgrade head`, `alembic check`), this
file opens its own connection to the URL from `-x database_url=...`, else from
CSPM_WATCH_DATABASE_URL, else the default SQLite file.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import Connection
from sqlalchemy.pool import NullPool

# Importing the package registers every table on Base.metadata, not only those of tables.py.
import service.storage  # noqa: F401
from service.errors import StorageError
from service.storage.engine import DEFAULT_DATABASE_URL, create_engine, parse_database_url
from service.storage.tables import Base

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("database_url")
    return url or os.environ.get("CSPM_WATCH_DATABASE_URL") or DEFAULT_DATABASE_URL


def _configure(**options: object) -> None:
    # Batch mode lets ALTER-style operations work on SQLite, which rebuilds the table instead.
    context.configure(target_metadata=target_metadata, render_as_batch=True, **options)  # type: ignore[arg-type]


def run_migrations_offline() -> None:
    _configure(
        url=parse_database_url(_database_url()),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_on(connection: Connection) -> None:
    is_sqlite = connection.dialect.name == "sqlite"
    if is_sqlite:
        # A batch operation copies a table, drops the original and renames the copy. With
        # foreign keys on, dropping a referenced table would delete or reject the rows that
        # refer to it, so the keys are off during migrations and checked afterwards.
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
    if is_sqlite:
        _require_consistent_foreign_keys(connection)
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")


def _require_consistent_foreign_keys(connection: Connection) -> None:
    violations = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if violations:
        raise StorageError(
            f"the migration left {len(violations)} rows whose foreign key points nowhere, "
            f"first: {tuple(violations[0])}"
        )


async def _run_migrations_on_own_connection() -> None:
    engine = create_engine(_database_url(), poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations_on)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations_on(connection)
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name)
    asyncio.run(_run_migrations_on_own_connection())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
