"""Logging: one line per event, JSON off a terminal, and no secret from the configuration.

The cycle test runs real cycles against the simulator (a rejected token, two 500s), sends
deliveries to a closed port, and runs a scheduled job that raises, all through the service's
own logging set-up at DEBUG.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import subprocess
import sys
import textwrap
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from service.config import load_settings
from service.logging import REDACTED, configure_logging, redact_secrets, redact_text
from service.runtime import open_runtime
from service.scheduler import build_scheduler, target_job_id
from service.simulator.faults import FaultKind
from tests.support.simulators import SimulatorFactory

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DENIED_TOKEN = "dop_v1_" + "d" * 64
WEBHOOK_SECRET = "whsec_TG9nZ2luZ1Rlc3RTaWduaW5nU2VjcmV0MTIzNDU2"
SLACK_WEBHOOK_PATH = "/services/T0LOGTEST/B0LOGTEST/LoggingTestWebhookPath42"
DATABASE_PASSWORD = "db-password-for-logging-test"


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    """The service's logging set-up at DEBUG, written to a buffer, restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    hooks = sys.excepthook, threading.excepthook
    buffer = io.StringIO()
    configure_logging(level="DEBUG", stream=buffer)
    yield buffer
    root.handlers[:] = handlers
    root.setLevel(level)
    sys.excepthook, threading.excepthook = hooks
    logging.captureWarnings(False)
    structlog.reset_defaults()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _parse_lines(output: str) -> list[dict[str, Any]]:
    events = []
    for line in output.splitlines():
        event = json.loads(line)
        assert isinstance(event, dict), line
        assert "event" in event, line
        events.append(event)
    return events


async def test_cycle_failures_log_clean_json_lines(
    tmp_path: Path, make_simulator: SimulatorFactory, log_buffer: io.StringIO
) -> None:
    simulator = await make_simulator()
    simulator.faults.add("get_scan", FaultKind.SERVER_ERROR, times=2)
    closed_port = _closed_port()
    slack_webhook_url = f"http://127.0.0.1:{closed_port}{SLACK_WEBHOOK_PATH}"
    config = tmp_path / "cspm-watch.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            database_url: "sqlite+aiosqlite:///{tmp_path / "cspm-watch.db"}"
            api_url: {simulator.url}
            targets:
              - name: denied
                token_env: DENIED_TOKEN
                schedule: {{interval_s: 3600}}
              - name: flaky
                token_env: FLAKY_TOKEN
                schedule: {{interval_s: 3600}}
                poll: {{initial_interval_s: 0.05, max_interval_s: 0.2, timeout_s: 20}}
            notifiers:
              pager: {{type: slack_webhook, url_env: SLACK_WEBHOOK_URL}}
              soc:
                type: webhook
                url: http://127.0.0.1:{closed_port}/hooks/cspm
                secret_env: WEBHOOK_SECRET
            """
        )
    )
    environ = {
        "DENIED_TOKEN": DENIED_TOKEN,
        "FLAKY_TOKEN": simulator.token,
        "SLACK_WEBHOOK_URL": slack_webhook_url,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    settings = load_settings(config, environ)
    denied, flaky = settings.targets

    async with open_runtime(settings) as runtime:
        denied_result = await runtime.run_target(denied)
        flaky_result = await runtime.run_target(flaky)
        await runtime.dispatch()

        async def broken_job(_target: object) -> None:
            raise RuntimeError(
                f"state lost for {slack_webhook_url} with {simulator.token}, "
                f"database postgresql://cspm:{DATABASE_PASSWORD}@db.internal/cspm"
            )

        async def nothing() -> None:
            return None

        scheduler = build_scheduler(
            settings, run_target=broken_job, dispatch=nothing, prune=nothing
        )
        scheduler.start()
        try:
            scheduler.modify_job(target_job_id("flaky"), next_run_time=datetime.now(UTC))
            async with asyncio.timeout(10):
                while "scheduled_job_failed" not in log_buffer.getvalue():  # noqa: ASYNC110 - reads a log buffer
                    await asyncio.sleep(0.02)
        finally:
            scheduler.shutdown(wait=False)

    output = log_buffer.getvalue()
    events = _parse_lines(output)
    names = [event["event"] for event in events]

    assert denied_result.status.value == "error"
    assert flaky_result.status.value == "completed"
    summary_lines = [event for event in events if event["event"] == "cycle_finished"]
    # One summary line per cycle: the two cycles above, and none from the failed job.
    assert sorted(event["target"] for event in summary_lines) == ["denied", "flaky"]
    summaries = {event["target"]: event for event in summary_lines}
    assert summaries["denied"]["status"] == "error"
    assert "401" in summaries["denied"]["reason"]
    assert summaries["flaky"]["status"] == "completed"
    retries = [event for event in events if event["event"] == "request_retried"]
    assert [event["status"] for event in retries][:1] == [500]
    assert "delivery_retry_scheduled" in names
    failed_job = next(event for event in events if event["event"] == "scheduled_job_failed")
    assert failed_job["exception"][0]["exc_type"] == "RuntimeError"
    assert REDACTED in failed_job["exception"][0]["exc_value"]
    # APScheduler's own report of the failed job goes through the same renderer.
    assert any(event.get("logger", "").startswith("apscheduler") for event in events)

    secrets = {
        "DigitalOcean token": simulator.token,
        "rejected DigitalOcean token": DENIED_TOKEN,
        "Slack webhook URL": slack_webhook_url,
        "Slack webhook path": SLACK_WEBHOOK_PATH,
        "webhook signing secret": WEBHOOK_SECRET,
        "webhook signing key": WEBHOOK_SECRET.removeprefix("whsec_"),
        "database password": DATABASE_PASSWORD,
    }
    leaked = [name for name, secret in secrets.items() if secret in output]
    assert leaked == []


def test_console_exception_renders_one_line(log_buffer: io.StringIO) -> None:
    configure_logging(json=False, stream=log_buffer)
    log = structlog.get_logger("tests.console")
    secret = "xoxb-1234567890-console-secret"

    try:
        try:
            raise ValueError(f"first line with {secret}\nsecond line")
        except ValueError as error:
            raise RuntimeError("wrapped") from error
    except RuntimeError:
        log.exception("thing_failed", detail="a\nb")

    lines = log_buffer.getvalue().splitlines()
    assert len(lines) == 1
    assert "thing_failed" in lines[0]
    assert "RuntimeError: wrapped" in lines[0]
    assert "caused by ValueError" in lines[0]
    assert secret not in lines[0]


def test_standard_library_logs_render_as_json(log_buffer: io.StringIO) -> None:
    logging.getLogger("aiohttp.server").error("Error handling request\nfrom %s", "127.0.0.1")
    logging.getLogger("alembic.runtime.migration").warning("Will assume transactional DDL.")
    logging.getLogger("sqlalchemy.engine.Engine").info("below WARNING, dropped")

    events = _parse_lines(log_buffer.getvalue())

    assert [event["logger"] for event in events] == ["aiohttp.server", "alembic.runtime.migration"]
    assert events[0]["event"] == "Error handling request\nfrom 127.0.0.1"
    assert events[0]["level"] == "error"


def test_python_warning_logs_as_json(log_buffer: io.StringIO) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        logging.captureWarnings(True)
        warnings.warn("deprecated\nsetting", DeprecationWarning, stacklevel=1)

    (event,) = _parse_lines(log_buffer.getvalue())
    assert event["logger"] == "py.warnings"
    assert "deprecated" in event["event"]


def test_uncaught_exception_logs_one_json_line() -> None:
    secret = "dop_v1_" + "e" * 64
    program = (
        "from service.logging import configure_logging\n"
        "configure_logging()\n"
        f"raise RuntimeError('crashed with {secret}')\n"
    )

    completed = subprocess.run(
        [sys.executable, "-c", program],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 1
    (event,) = _parse_lines(completed.stderr)
    assert event["event"] == "uncaught_exception"
    assert event["level"] == "critical"
    assert event["exception"][0]["exc_type"] == "RuntimeError"
    assert secret not in completed.stderr


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("token dop_v1_" + "a" * 64, "token "),
        ("slack xoxb-123-456-abcdef", "slack "),
        ("app xapp-1-A0-123-abcdef", "app "),
        ("hook https://hooks.slack.com/services/T0/B0/abc", "hook "),
        ("secret whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY", "secret "),
        ("Authorization: Bearer abcdefghijklmnop", "Authorization: Bearer "),
        ("GET https://api.example.com/x?page=2&token=abcdef123", "?page=2&token="),
        ("postgresql+psycopg://cspm:hunter2hunter2@db:5432/cspm", "postgresql+psycopg://cspm:"),
    ],
)
def test_redact_text_removes_credential_patterns(text: str, kept: str) -> None:
    redacted = redact_text(text)

    assert REDACTED in redacted
    assert kept in redacted
    assert redacted != text


@pytest.mark.parametrize(
    "key",
    ["token", "api_key", "Authorization", "webhook_url", "db_password", "client_secret", "cookie"],
)
def test_redact_secrets_by_key(key: str) -> None:
    event = redact_secrets(None, "info", {"event": "request_sent", key: "plain-looking-value"})

    assert event[key] == REDACTED
    assert event["event"] == "request_sent"


def test_redact_secrets_keeps_ordinary_values() -> None:
    event = redact_secrets(
        None, "info", {"event": "scan_completed", "scan_id": "c6d0e2c4", "polls": 3}
    )

    assert event == {"event": "scan_completed", "scan_id": "c6d0e2c4", "polls": 3}
