"""Helpers for the command-line tests: a configuration file, click's runner, a server thread.

This module contains no tests. The commands call asyncio.run themselves, so the tests that use
these helpers are synchronous, and every server they talk to runs on its own thread and event
loop.
"""

from __future__ import annotations

import json
import logging
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from click.testing import CliRunner, Result

from service.cli import cli
from service.config import Settings, load_settings

# The configuration names this variable; each test puts the simulator's token in it.
TOKEN_VARIABLE = "CSPM_TEST_DO_TOKEN"
WEBHOOK_SECRET_VARIABLE = "CSPM_TEST_WEBHOOK_SECRET"
WEBHOOK_SECRET = "whsec_" + "c2VjcmV0LWZvci1jbGktdGVzdHMtb25seQ=="


# Variables of the developer's shell that would change what the commands load.
_UNSET_VARIABLES = (
    "CSPM_WATCH_CONFIG",
    "CSPM_WATCH_DATABASE_URL",
    "CSPM_WATCH_API_URL",
    "CSPM_WATCH_LISTEN",
    "CSPM_WATCH_LOG_LEVEL",
)


@dataclass(frozen=True)
class CliSetup:
    """A configuration file in a test's tmp_path and the environment the commands run with."""

    config_path: Path
    database_path: Path
    token: str
    environ: dict[str, str]

    def settings(self) -> Settings:
        return load_settings(self.config_path, environ=self.environ)

    def invoke(self, *args: str, token: str | None = None, input_text: str | None = None) -> Result:
        """Run `cspm-watch --config FILE ARGS`; fail if any output contains a token or a
        traceback. `token` replaces the simulator's token for this call."""
        environ: dict[str, str | None] = {**self.environ, TOKEN_VARIABLE: token or self.token}
        environ.update(dict.fromkeys(_UNSET_VARIABLES))
        result = CliRunner().invoke(
            cli, ["--config", str(self.config_path), *args], env=environ, input=input_text
        )
        combined = result.stdout + result.stderr
        assert self.token not in combined
        assert token is None or token not in combined
        assert "Traceback" not in combined
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    def invoke_json(self, *args: str) -> Any:
        """Run a command with `--output json`, require exit code 0 and return the parsed JSON."""
        result = self.invoke(*args, "--output", "json")
        assert result.exit_code == 0, result.stderr
        return json.loads(result.stdout)


def write_setup(
    tmp_path: Path,
    api_url: str,
    token: str,
    *,
    notifiers_yaml: str = "stdout: {type: console}",
    extra_targets_yaml: str = "",
    poll_timeout_s: float = 30.0,
    resource_detail_min_severity: str = "LOW",
) -> CliSetup:
    """Write a configuration with one target `demo` pointed at `api_url`."""
    database_path = tmp_path / "cspm-watch.db"
    config_path = tmp_path / "cspm-watch.yaml"
    text = textwrap.dedent(
        f"""\
        database_url: sqlite+aiosqlite:///{database_path}
        api_url: {api_url}
        targets:
          - name: demo
            token_env: {TOKEN_VARIABLE}
            schedule: {{interval_s: 3600}}
            poll: {{initial_interval_s: 0.05, max_interval_s: 0.2, timeout_s: {poll_timeout_s}}}
            resource_detail_min_severity: {resource_detail_min_severity}
        """
    )
    text += textwrap.indent(textwrap.dedent(extra_targets_yaml), "  ")
    text += "notifiers:\n" + textwrap.indent(textwrap.dedent(notifiers_yaml), "  ") + "\n"
    config_path.write_text(text, encoding="utf-8")
    environ = {TOKEN_VARIABLE: token, WEBHOOK_SECRET_VARIABLE: WEBHOOK_SECRET}
    return CliSetup(config_path, database_path, token, environ)


@contextmanager
def logging_restored() -> Iterator[None]:
    """Undo the logging set-up of the commands when the block ends, because its handler
    writes to click's test streams, which are closed once the command returns."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    structlog_config = structlog.get_config()
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.configure(**structlog_config)
