"""No log line, stored error or printed output carries a token, a webhook URL or a signing secret,
even at DEBUG and through every kind of failure."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest
import structlog

from service.logging import configure_logging
from service.notifiers.base import Notifier
from service.notifiers.dispatcher import Dispatcher
from service.notifiers.render import render_deliveries
from service.notifiers.slack import SlackNotifier
from service.notifiers.slack_webhook import SlackWebhookNotifier
from service.notifiers.webhook import WebhookNotifier
from tests.notifiers.conftest import SLACK_CHANNEL, SLACK_TOKEN, SLACK_WEBHOOK_PATH, WEBHOOK_SECRET
from tests.notifiers.factories import batch, item
from tests.notifiers.support import FakeClock, delivery_rows, enqueue
from tests.storage.conftest import TestDatabase
from tests.support.slack_server import Fault, SlackServer
from tests.support.webhook_receiver import ScriptedAnswer, WebhookReceiver


@pytest.fixture
def debug_logging() -> Iterator[io.StringIO]:
    """The service's logging at DEBUG for one test, written to the returned buffer in place of
    standard error, and restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging(level="DEBUG", json=True)
    buffer = io.StringIO()
    (service_handler,) = root.handlers
    assert isinstance(service_handler, logging.StreamHandler)
    service_handler.setStream(buffer)
    yield buffer
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def secrets_of(slack_server: SlackServer) -> list[str]:
    webhook_url = slack_server.webhook_url(SLACK_WEBHOOK_PATH)
    return [
        SLACK_TOKEN,
        webhook_url,
        SLACK_WEBHOOK_PATH,
        WEBHOOK_SECRET,
        WEBHOOK_SECRET.removeprefix("whsec_"),
    ]


async def test_failures_at_debug_leak_no_secret(
    database: TestDatabase,
    slack_server: SlackServer,
    webhook_receiver: WebhookReceiver,
    clock: FakeClock,
    opened_notifiers: list[Notifier],
    debug_logging: io.StringIO,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    notifiers: list[Notifier] = [
        SlackNotifier(
            "security", token=SLACK_TOKEN, channel=SLACK_CHANNEL, api_url=slack_server.api_url
        ),
        SlackWebhookNotifier("pager", url=slack_server.webhook_url(SLACK_WEBHOOK_PATH)),
        WebhookNotifier("soc", url=webhook_receiver.url, secret=WEBHOOK_SECRET),
        # A wrong secret makes the receiver reject the signature with 401.
        WebhookNotifier("soc-old", url=webhook_receiver.url, secret="whsec_" + "A" * 32),
    ]
    opened_notifiers.extend(notifiers)
    for notifier in notifiers:
        for number in range(3):
            alert_batch = batch([item(number)], scan_id=f"scan-{number}")
            messages = render_deliveries(alert_batch, notifier.name, notifier)
            await enqueue(database.sessions, messages, created_at=clock())
    slack_server.state.faults.extend(
        [
            Fault(status=429, error="ratelimited", retry_after_s=1),
            Fault(drop_connection=True),
            Fault(status=500),
            Fault(status=404, body_text="no_service"),
            Fault(error="invalid_auth"),
            Fault(error="msg_blocks_too_long"),
        ]
    )
    webhook_receiver.state.answers.extend([ScriptedAnswer(500), ScriptedAnswer(429, 2)])
    sender = Dispatcher(
        database.sessions,
        {notifier.name: notifier for notifier in notifiers},
        max_wait_s=5.0,
        clock=clock,
        sleep=clock.sleep,
    )

    for _ in range(3):
        await sender.dispatch_pending()
        clock.advance(7200)

    captured = capsys.readouterr()
    log_output = debug_logging.getvalue()
    rows = await delivery_rows(database.sessions)
    stored_errors = "\n".join(row.last_error or "" for row in rows)
    outputs = {
        "standard output": captured.out,
        "standard error": captured.err,
        "log output": log_output,
        "log records": caplog.text,
        "stored errors": stored_errors,
    }
    assert "delivery_sent" in log_output
    assert "delivery_failed" in log_output
    assert "delivery_retry_scheduled" in log_output
    assert stored_errors.strip()
    for where, text in outputs.items():
        leaked = [index for index, secret in enumerate(secrets_of(slack_server)) if secret in text]
        assert leaked == [], f"secret number(s) {leaked} found in {where}"
