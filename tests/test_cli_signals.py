"""`cspm-watch scans create --wait` stopped by SIGINT (Ctrl-C) or SIGTERM, as a real process.

Click's runner cannot deliver a signal, so each test starts `python -m service` against a
simulator whose scan never ends, waits until the command polls, and sends the signal.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from service.simulator import parse_scenario
from tests.support.simulators import SimulatorFactory
from tests.test_cli_support import TOKEN_VARIABLE, write_setup

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# Starting the interpreter and importing the service takes a few seconds on a busy machine.
PROCESS_TIMEOUT_S = 60.0

NEVER_ENDING_SCENARIO = """
name: never-ending
resources:
  - {urn: "do:droplet:500000101", name: app-1, type: Droplet}
scans:
  - outcome: IN_PROGRESS
"""


async def read_until(stream: asyncio.StreamReader, marker: str, lines: list[str]) -> None:
    """Read lines into `lines` until one contains `marker`; fail at the end of the stream."""
    while True:
        raw = await stream.readline()
        if not raw:
            raise AssertionError(f"the process ended before printing {marker!r}: {lines}")
        lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
        if marker in lines[-1]:
            return


@pytest.mark.parametrize(
    ("signum", "exit_code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["int", "term"]
)
async def test_scans_create_wait_stopped_by_signal(
    tmp_path: Path, make_simulator: SimulatorFactory, signum: signal.Signals, exit_code: int
) -> None:
    simulator = await make_simulator(parse_scenario(NEVER_ENDING_SCENARIO, source="never-ending"))
    setup = write_setup(tmp_path, simulator.url, simulator.token, poll_timeout_s=600)
    environ = {key: value for key, value in os.environ.items() if not key.startswith("CSPM_WATCH_")}
    environ[TOKEN_VARIABLE] = simulator.token
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "service", "--config", str(setup.config_path)),
        *("scans", "create", "--wait"),
        cwd=PROJECT_ROOT,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        async with asyncio.timeout(PROCESS_TIMEOUT_S):
            lines: list[str] = []
            # The first progress line comes from inside the wait, where the handlers are set.
            await read_until(process.stderr, "IN_PROGRESS after", lines)
            process.send_signal(signum)
            stdout, rest = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    stderr = "\n".join(lines) + "\n" + rest.decode("utf-8", "replace")
    scan_id = re.search(r"Started scan (\S+);", stderr)
    assert scan_id is not None, stderr
    last_line = stderr.strip().splitlines()[-1]
    assert process.returncode == exit_code, stderr
    assert stdout == b""
    assert f"Stopped waiting on {signum.name}." in last_line
    assert f"Scan {scan_id[1]} keeps running at DigitalOcean" in last_line
    assert f"`cspm-watch scans get {scan_id[1]}`" in last_line
    assert "Aborted" not in stderr
    assert "Traceback" not in stderr
    assert simulator.token not in stderr
