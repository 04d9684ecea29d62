"""Engine creation: accepted URLs, clear errors without passwords, SQLite settings."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import text

from service.errors import ConfigError, StorageError
from service.storage import create_engine, mask_database_url, parse_database_url

ACCEPTED = {
    "sqlite+aiosqlite:///data/cspm.db": "sqlite+aiosqlite",
    "sqlite:///data/cspm.db": "sqlite+aiosqlite",
    "postgresql+psycopg://watch:pw@db:5432/cspm": "postgresql+psycopg",
    "postgresql://watch:pw@db:5432/cspm": "postgresql+psycopg",
    "postgres://watch:pw@db/cspm": "postgresql+psycopg",
}


@pytest.mark.parametrize(("url", "driver"), ACCEPTED.items(), ids=ACCEPTED.keys())
def test_parse_database_url_maps_to_async_driver(url: str, driver: str) -> None:
    assert parse_database_url(url).drivername == driver


REJECTED = {
    "mysql://watch:hunter2-secret@db/cspm": "unsupported database_url",
    "postgresql+asyncpg://watch:hunter2-secret@db/cspm": "unsupported database_url",
    "not a url hunter2-secret": "invalid database_url",
    "postgresql://watch:hunter2-secret@db:port/cspm": "invalid database_url",
    "sqlite+aiosqlite://": "in-memory SQLite",
    "sqlite:///:memory:": "in-memory SQLite",
}


@pytest.mark.parametrize(("url", "message"), REJECTED.items(), ids=REJECTED.keys())
def test_parse_database_url_rejects_unusable(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        parse_database_url(url)

    assert "hunter2-secret" not in str(raised.value)


def test_mask_database_url_hides_password() -> None:
    masked = mask_database_url("postgresql+psycopg://watch:hunter2-secret@db:5432/cspm")

    assert "hunter2-secret" not in masked
    assert masked.startswith("postgresql+psycopg://watch:")


REPO_ROOT = Path(__file__).resolve().parents[2]
# Root may write anywhere, so as root the check runs as the unprivileged user 65534.
UNPRIVILEGED = (
    ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
)


def test_create_engine_missing_directory_raises(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'cspm.db'}"

    with pytest.raises(StorageError, match="does not exist"):
        create_engine(url)


def test_create_engine_read_only_directory_raises() -> None:
    # pytest's tmp_path sits below a directory that only its owner can enter, hence a
    # directory of its own that others can enter but not write.
    with tempfile.TemporaryDirectory() as directory:
        base = Path(directory)
        base.chmod(0o555)
        url = f"sqlite+aiosqlite:///{base / 'cspm.db'}"
        script = (
            "from service.storage import create_engine\n"
            "from service.errors import StorageError\n"
            "try:\n"
            f"    create_engine({url!r})\n"
            "except StorageError as error:\n"
            "    print(error)\n"
        )
        result = subprocess.run(
            [*UNPRIVILEGED, sys.executable, "-c", script],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env={"PATH": os.environ["PATH"], "HOME": directory},
            check=False,
        )
        base.chmod(0o700)

    assert result.returncode == 0, result.stderr
    assert "is not writable" in result.stdout
    assert str(base) in result.stdout


async def test_create_engine_sqlite_connection_settings(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'cspm.db'}")
    try:
        async with engine.connect() as connection:
            journal_mode = (await connection.execute(text("PRAGMA journal_mode"))).scalar()
            busy_timeout_ms = (await connection.execute(text("PRAGMA busy_timeout"))).scalar()
            foreign_keys = (await connection.execute(text("PRAGMA foreign_keys"))).scalar()
    finally:
        await engine.dispose()

    assert journal_mode == "wal"
    assert busy_timeout_ms == 30_000
    assert foreign_keys == 1
