"""The service as a real process: start `cspm-watch once` or `run`, read its JSON log lines as
they come, send signals, and wait for it to end, every wait bounded."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Starting the interpreter and importing the service takes about two seconds on a busy
# two-core machine; a cycle against the simulator takes well under one.
PROCESS_TIMEOUT_S = 60.0


# Every process started, so that a fixture can kill any that a failed test left running.
STARTED: list[ServiceProcess] = []


@dataclass
class ServiceProcess:
    """A running service process and everything it printed so far."""

    process: asyncio.subprocess.Process
    stdout_lines: list[str] = field(default_factory=list)
    stderr_lines: list[str] = field(default_factory=list)
    _readers: list[asyncio.Task[None]] = field(default_factory=list)
    _new_line: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def stderr(self) -> str:
        return "\n".join(self.stderr_lines)

    def events(self) -> list[dict[str, Any]]:
        """The JSON log events written to standard error so far."""
        parsed = []
        for line in self.stderr_lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                parsed.append(event)
        return parsed

    def event_names(self) -> list[str]:
        return [str(event.get("event")) for event in self.events()]

    async def wait_for_event(
        self,
        name: str,
        *,
        matches: Callable[[dict[str, Any]], bool] = lambda _: True,
        count: int = 1,
        timeout_s: float = PROCESS_TIMEOUT_S,
    ) -> dict[str, Any]:
        """Wait until the process has logged `count` events called `name` that pass `matches`;
        return the last of them."""
        async with asyncio.timeout(timeout_s):
            while True:
                self._new_line.clear()
                found = [e for e in self.events() if e.get("event") == name and matches(e)]
                if len(found) >= count:
                    return found[count - 1]
                if all(reader.done() for reader in self._readers):
                    await self.process.wait()
                    raise AssertionError(
                        f"the process exited with {self.process.returncode} before logging "
                        f"{name}:\n{self.stderr}"
                    )
                await self._new_line.wait()

    def send(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    async def finish(self, timeout_s: float = PROCESS_TIMEOUT_S) -> int:
        """Wait for the process to exit and its output to be read; return the exit code."""
        async with asyncio.timeout(timeout_s):
            code = await self.process.wait()
            await asyncio.gather(*self._readers)
        return code

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.finish()


async def start_service(
    arguments: list[str],
    config_path: Path,
    environment: Mapping[str, str],
    *,
    prefix: Sequence[str] = (),
) -> ServiceProcess:
    """Start `python -m service ARGUMENTS` with the configuration file and extra variables;
    `prefix` goes before the interpreter (for example to run it as another user)."""
    env = dict(os.environ)
    env.update(environment)
    env["CSPM_WATCH_CONFIG"] = str(config_path)
    process = await asyncio.create_subprocess_exec(
        *prefix,
        sys.executable,
        "-m",
        "service",
        *arguments,
        cwd=PROJECT_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    service = ServiceProcess(process)
    STARTED.append(service)
    assert process.stdout is not None
    assert process.stderr is not None
    service._readers = [
        asyncio.create_task(_read_lines(process.stdout, service.stdout_lines, service)),
        asyncio.create_task(_read_lines(process.stderr, service.stderr_lines, service)),
    ]
    return service


async def _read_lines(
    stream: asyncio.StreamReader, lines: list[str], service: ServiceProcess
) -> None:
    # Reading all the time keeps a chatty daemon from blocking on a full pipe.
    while True:
        line = await stream.readline()
        if not line:
            service._new_line.set()
            return
        lines.append(line.decode("utf-8", "replace").rstrip("\n"))
        service._new_line.set()


async def run_to_end(
    arguments: list[str],
    config_path: Path,
    environment: Mapping[str, str],
    *,
    prefix: Sequence[str] = (),
) -> ServiceProcess:
    """Run a service command to its end and return the finished process."""
    service = await start_service(arguments, config_path, environment, prefix=prefix)
    try:
        await service.finish()
    finally:
        await service.kill()
    return service


def assert_clean_output(service: ServiceProcess, *secrets: str) -> None:
    """Assert that the process logged no traceback and no secret."""
    output = service.stderr + "\n".join(service.stdout_lines)
    assert "Traceback" not in output, output
    assert not [e for e in service.events() if "exception" in e], service.stderr
    for secret in secrets:
        assert secret not in output
