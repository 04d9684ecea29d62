"""A PostgreSQL server of the test's own, which the test may stop and start again.

`initdb` creates a cluster in a temporary directory and `pg_ctl` runs it on a free port of
127.0.0.1. The machine's shared server on port 5432 is never touched. PostgreSQL refuses to run
as root, so as root the binaries run as the `postgres` user through `runuser`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.storage.conftest import REQUIRE_POSTGRES_VARIABLE

POSTGRES_BINARIES = Path("/usr/lib/postgresql")
COMMAND_TIMEOUT_S = 60.0


def postgres_bin_dir_or_skip() -> Path:
    """The newest installed PostgreSQL's bin directory; skip, or fail when PostgreSQL is
    required, if there is none."""
    candidates = sorted(
        POSTGRES_BINARIES.glob("*/bin/initdb"), key=lambda path: int(path.parts[-3])
    )
    if candidates:
        return candidates[-1].parent
    reason = f"no initdb under {POSTGRES_BINARIES}; install the PostgreSQL server package"
    if os.environ.get(REQUIRE_POSTGRES_VARIABLE) == "1":
        pytest.fail(f"{REQUIRE_POSTGRES_VARIABLE}=1 but {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ThrowawayPostgres:
    bin_dir: Path
    data_dir: Path
    port: int
    run_as: str | None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    async def start(self) -> None:
        options = f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        await self._run(
            "pg_ctl", "-D", str(self.data_dir), "-o", options, "-l", str(self.log_path), "-w",
            "start",
        )  # fmt: skip

    async def stop(self) -> None:
        """Stop the server the way an administrator would: sessions are ended, no new ones."""
        await self._run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    async def _run(self, program: str, *arguments: str) -> None:
        command = [str(self.bin_dir / program), *arguments]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            output, _ = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"{program} failed ({process.returncode}): {output.decode()}")


@contextlib.asynccontextmanager
async def throwaway_postgres() -> AsyncIterator[ThrowawayPostgres]:
    """Create, start and finally remove a PostgreSQL cluster with trust authentication."""
    bin_dir = postgres_bin_dir_or_skip()
    run_as = "postgres" if os.geteuid() == 0 else None
    # Under /tmp itself, because pytest's own temporary directories are private to root.
    data_dir = Path(tempfile.mkdtemp(prefix="cspm-faults-pg-"))
    if run_as is not None:
        user = pwd.getpwnam(run_as)
        os.chown(data_dir, user.pw_uid, user.pw_gid)
    server = ThrowawayPostgres(bin_dir, data_dir, free_port(), run_as)
    try:
        await server._run(
            "initdb", "-D", str(data_dir), "-A", "trust", "-U", "postgres", "--no-sync",
            "-E", "UTF8",
        )  # fmt: skip
        await server.start()
        yield server
    finally:
        with contextlib.suppress(RuntimeError):
            await server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
