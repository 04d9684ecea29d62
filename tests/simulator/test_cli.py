"""`cspm-watch simulate` serves requests until SIGTERM and rejects invalid options."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner

from service.cli import cli

REPOSITORY = Path(__file__).parents[2]
# Generous bounds so a busy CI machine does not fail the test; they are not assertions on speed.
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


async def start_simulate(*arguments: str) -> tuple[asyncio.subprocess.Process, list[str]]:
    """Start `python -m service simulate` and return it with its output up to the curl lines."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "simulate",
        "--port",
        "0",
        *arguments,
        cwd=REPOSITORY,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    lines: list[str] = []
    while not any(line.startswith("Press Ctrl+C") for line in lines):
        raw = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_S)
        if not raw:
            break
        lines.append(raw.decode().rstrip("\n"))
    return process, lines


async def stop(process: asyncio.subprocess.Process) -> int:
    if process.returncode is None:
        process.terminate()
    return await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)


async def test_simulate_serves_until_terminated() -> None:
    process, lines = await start_simulate("--token", "test-token-for-cli")
    try:
        banner = "\n".join(lines)
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", banner)
        assert match is not None, banner
        url = match.group(1)
        headers = {"Authorization": "Bearer test-token-for-cli"}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{url}/v2/security/scans/latest", headers=headers) as response,
        ):
            status = response.status
            body = await response.json()
    finally:
        exit_code = await stop(process)

    assert status == 200
    assert body["scan"]["status"] == "SCAN_NOT_RUN"
    assert "test-token-for-cli" not in banner
    assert exit_code == 0


async def test_simulate_prints_generated_token() -> None:
    process, lines = await start_simulate()
    try:
        banner = "\n".join(lines)
    finally:
        await stop(process)

    match = re.search(r"token:\s+(dop_v1_[0-9a-f]{64})", banner)
    assert match is not None, banner
    assert f"Bearer {match.group(1)}" in banner
    assert "cspm-watch scans create --wait" in banner


def test_simulate_invalid_scenario_exits_with_error(tmp_path: Path) -> None:
    scenario = tmp_path / "broken.yaml"
    scenario.write_text("name: broken\nscans: []\ncolour: blue\n", encoding="utf-8")

    result = CliRunner().invoke(cli, ["simulate", "--port", "0", "--scenario", str(scenario)])

    assert result.exit_code == 1
    assert "colour: Extra inputs are not permitted" in result.output


@pytest.mark.parametrize("option", ["--per-minute", "--per-hour", "--latency-ms"])
def test_simulate_rejects_out_of_range_options(option: str) -> None:
    result = CliRunner().invoke(cli, ["simulate", "--port", "0", option, "-1"])

    assert result.exit_code == 2
    assert option in result.output
