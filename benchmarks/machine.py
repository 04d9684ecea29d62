"""The machine and software a benchmark ran on, recorded next to its results."""

from __future__ import annotations

import os
import platform
import sqlite3
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from service.errors import ConfigError
from service.storage import create_engine, mask_database_url

PACKAGES = ("aiohttp", "sqlalchemy", "aiosqlite", "psycopg", "pydo", "azure-core")
POSTGRES_CONNECT_TIMEOUT_S = 10


def describe_machine() -> dict[str, Any]:
    """Return the CPU, core count, load, OS, Python and package versions of this host."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "packages": {name: _version(name) for name in PACKAGES},
    }


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


async def postgres_problem(url: str) -> str | None:
    """Return why PostgreSQL at `url` cannot be used, or None when a query succeeds."""
    try:
        engine = create_engine(
            url, poolclass=NullPool, connect_args={"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}
        )
    except ConfigError as error:
        return str(error)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except (SQLAlchemyError, OSError) as error:
        cause = str(getattr(error, "orig", None) or error).splitlines()[0]
        return f"connecting to {mask_database_url(url)} failed: {cause}"
    finally:
        await engine.dispose()
    return None


async def postgres_version(url: str) -> str:
    """Return PostgreSQL's `server_version` at `url`."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            return str((await connection.execute(text("SHOW server_version"))).scalar_one())
    finally:
        await engine.dispose()
