"""Database fixtures: every test that takes them runs once on SQLite and once on PostgreSQL.

PostgreSQL comes from CSPM_WATCH_TEST_POSTGRES_URL; each test gets its own schema, dropped
afterwards, so tests never see each other's rows. Without the variable the PostgreSQL cases
are skipped, unless CSPM_WATCH_REQUIRE_POSTGRES=1 makes them fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import NullPool

from service.storage import create_engine, create_sessionmaker, upgrade_database

POSTGRES_URL_VARIABLE = "CSPM_WATCH_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_VARIABLE = "CSPM_WATCH_REQUIRE_POSTGRES"


@dataclass(frozen=True)
class TestDatabase:
    """A migrated database for one test: its URL (with the password), engine and sessions."""

    __test__ = False  # not a test class, despite the name

    url: str
    dialect: str
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]


def postgres_url_or_skip() -> str:
    """Return the PostgreSQL URL for tests; skip, or fail when PostgreSQL is required."""
    url = os.environ.get(POSTGRES_URL_VARIABLE, "")
    if url:
        return url
    reason = (
        f"{POSTGRES_URL_VARIABLE} is not set; set it to a PostgreSQL URL such as "
        "postgresql+psycopg://postgres@127.0.0.1:5432/test to run this case"
    )
    if os.environ.get(REQUIRE_POSTGRES_VARIABLE) == "1":
        pytest.fail(f"{REQUIRE_POSTGRES_VARIABLE}=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def blank_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """URL of an empty database: a new SQLite file, or a new PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'cspm-watch.db'}"
        return
    async for url in _postgres_schema(postgres_url_or_skip()):
        yield url


@pytest.fixture
async def database(blank_database_url: str) -> AsyncIterator[TestDatabase]:
    """A database migrated to the newest revision, with an engine and a session factory."""
    await upgrade_database(blank_database_url)
    engine = create_engine(blank_database_url)
    try:
        yield TestDatabase(
            url=blank_database_url,
            dialect=engine.dialect.name,
            engine=engine,
            sessions=create_sessionmaker(engine),
        )
    finally:
        await engine.dispose()


async def _postgres_schema(base_url: str) -> AsyncIterator[str]:
    schema = f"test_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base_url, poolclass=NullPool)
    async with admin.begin() as connection:
        await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        async with admin.begin() as connection:
            await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()
