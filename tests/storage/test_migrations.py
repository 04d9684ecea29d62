"""Migrations: upgrade, downgrade and upgrade again, with no drift from the models."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.pool import NullPool

from service.errors import StorageError
from service.storage import (
    check_database,
    create_engine,
    database_revision,
    downgrade_database,
    head_revision,
    upgrade_database,
)
from service.storage.tables import NAMING_CONVENTION, Base

REPOSITORY = Path(__file__).resolve().parents[2]
TABLES = {
    "scans",
    "findings",
    "affected_resources",
    "finding_states",
    "deliveries",
    "mutes",
    "leases",
    "target_status",
}


async def table_names(url: str) -> set[str]:
    engine = create_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    finally:
        await engine.dispose()
    return set(names) - {"alembic_version"}


async def test_migrations_upgrade_downgrade_upgrade(blank_database_url: str) -> None:
    assert await upgrade_database(blank_database_url) == head_revision()
    assert await table_names(blank_database_url) == TABLES

    assert await downgrade_database(blank_database_url) is None
    assert await database_revision(blank_database_url) is None
    assert await table_names(blank_database_url) == set()

    assert await upgrade_database(blank_database_url) == head_revision()
    assert await table_names(blank_database_url) == TABLES
    await check_database(blank_database_url)


async def test_upgrade_database_at_head_changes_nothing(blank_database_url: str) -> None:
    await upgrade_database(blank_database_url)

    assert await upgrade_database(blank_database_url) == head_revision()


async def test_alembic_check_command_finds_no_difference(blank_database_url: str) -> None:
    await upgrade_database(blank_database_url)
    environment = {**os.environ, "CSPM_WATCH_DATABASE_URL": blank_database_url}

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "alembic",
        "check",
        cwd=REPOSITORY,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)

    assert process.returncode == 0, stderr.decode()
    assert "No new upgrade operations detected" in stdout.decode()


async def test_check_database_drift_raises(blank_database_url: str) -> None:
    await upgrade_database(blank_database_url)
    engine = create_engine(blank_database_url, poolclass=NullPool)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP INDEX ix_finding_states_target_status"))
    finally:
        await engine.dispose()

    with pytest.raises(StorageError, match="differs from the models"):
        await check_database(blank_database_url)


def test_tables_every_constraint_named_by_convention() -> None:
    prefixes = {name: pattern.split("%")[0] for name, pattern in NAMING_CONVENTION.items()}
    for table in Base.metadata.tables.values():
        assert table.primary_key.name == f"pk_{table.name}"
        for constraint in table.constraints:
            assert constraint.name, f"unnamed constraint on {table.name}"
            assert str(constraint.name).startswith(tuple(prefixes.values()))
        for index in table.indexes:
            assert str(index.name).startswith(prefixes["ix"])


async def test_upgrade_from_concurrent_processes_on_new_sqlite(tmp_path: Path) -> None:
    """Processes that start together on a new SQLite file all migrate it without error."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'cspm-watch.db'}"
    script = (
        "import asyncio\n"
        "from service.storage import upgrade_database\n"
        f"print(asyncio.run(upgrade_database({url!r})))\n"
    )
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            script,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(6)
    ]
    outputs = await asyncio.gather(*(process.communicate() for process in processes))

    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr.decode()
        assert stdout.decode().strip().splitlines()[-1] == head_revision()
