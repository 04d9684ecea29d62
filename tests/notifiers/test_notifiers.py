"""Notifiers built from the configuration, classification of their responses, retry delays."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.config import load_settings
from service.digitalocean.models import Severity
from service.errors import NotifierError
from service.notifiers.console import ConsoleNotifier
from service.notifiers.factory import build_notifiers
from service.notifiers.retry import MessageTooLongError, backoff_delay_s, parse_retry_after
from service.notifiers.slack import SlackNotifier
from service.notifiers.slack_webhook import SlackWebhookNotifier
from service.notifiers.webhook import WebhookNotifier
from tests.notifiers.conftest import SLACK_TOKEN, WEBHOOK_SECRET
from tests.notifiers.factories import batch, item
from tests.support.slack_server import Fault, SlackServer
from tests.support.webhook_receiver import WebhookReceiver

CONFIG = """
targets:
  - name: production
    token_env: TEST_DO_TOKEN
notifiers:
  security: {type: slack, token_env: TEST_SLACK_TOKEN, channel: "#security", min_severity: HIGH}
  pager: {type: slack_webhook, url_env: TEST_SLACK_WEBHOOK_URL, min_severity: CRITICAL}
  soc: {type: webhook, url: "https://soc.example.invalid/hooks", secret_env: TEST_WEBHOOK_SECRET}
  stdout: {type: console}
"""


def test_build_notifiers_from_configuration(tmp_path: Path) -> None:
    path = tmp_path / "cspm-watch.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    environ = {
        "TEST_DO_TOKEN": "dop_v1_" + "a" * 64,
        "TEST_SLACK_TOKEN": SLACK_TOKEN,
        "TEST_SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/TestOnlyPath",
        "TEST_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }

    notifiers = build_notifiers(load_settings(path, environ).notifiers)

    assert {name: type(notifier) for name, notifier in notifiers.items()} == {
        "security": SlackNotifier,
        "pager": SlackWebhookNotifier,
        "soc": WebhookNotifier,
        "stdout": ConsoleNotifier,
    }
    assert notifiers["security"].min_severity is Severity.HIGH
    assert notifiers["pager"].min_severity is Severity.CRITICAL
    assert notifiers["soc"].min_severity is Severity.LOW
    assert notifiers["security"].channel_key == "slack:https://slack.com/api/:#security"
    assert "TestOnlyPath" not in notifiers["pager"].channel_key
    assert "TestOnlyPath" not in repr(notifiers["pager"])


async def test_slack_notifier_posts_to_its_channel(slack_server: SlackServer) -> None:
    notifier = SlackNotifier(
        "security", token=SLACK_TOKEN, channel="#security", api_url=slack_server.api_url
    )
    payload = _payload_for(notifier)

    await notifier.send(payload, webhook_id="msg_1")
    await notifier.aclose()

    (message,) = slack_server.state.messages_in("#security")
    assert message.body["blocks"][0]["type"] == "header"
    assert message.body["unfurl_links"] is False


@pytest.mark.parametrize(
    ("fault", "retryable", "retry_after_s"),
    [
        (Fault(status=429, error="ratelimited", retry_after_s=12), True, 12.0),
        (Fault(status=200, error="ratelimited"), True, None),
        (Fault(status=500), True, None),
        (Fault(status=503, body_text="upstream connect error"), True, None),
        (Fault(status=200, error="internal_error"), True, None),
        (Fault(drop_connection=True), True, None),
        (Fault(status=200, error="channel_not_found"), False, None),
        (Fault(status=200, error="is_archived"), False, None),
        (Fault(status=200, error="some_new_error"), False, None),
    ],
)
async def test_slack_notifier_classifies_answers(
    slack_server: SlackServer, fault: Fault, retryable: bool, retry_after_s: float | None
) -> None:
    notifier = SlackNotifier(
        "security", token=SLACK_TOKEN, channel="#security", api_url=slack_server.api_url
    )
    slack_server.state.faults.append(fault)

    with pytest.raises(NotifierError) as raised:
        await notifier.send(_payload_for(notifier), webhook_id="msg_1")
    await notifier.aclose()

    assert raised.value.retryable is retryable
    assert raised.value.retry_after_s == retry_after_s
    assert "notifier security" in str(raised.value)


async def test_slack_notifier_reports_too_long_for_splitting(slack_server: SlackServer) -> None:
    notifier = SlackNotifier(
        "security", token=SLACK_TOKEN, channel="#security", api_url=slack_server.api_url
    )
    slack_server.state.faults.append(Fault(error="msg_blocks_too_long"))

    with pytest.raises(MessageTooLongError):
        await notifier.send(_payload_for(notifier), webhook_id="msg_1")
    await notifier.aclose()


async def test_slack_invalid_blocks_error_names_the_limit(slack_server: SlackServer) -> None:
    notifier = SlackNotifier(
        "security", token=SLACK_TOKEN, channel="#security", api_url=slack_server.api_url
    )
    section = {"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}
    payload = json.dumps({"text": "fallback", "blocks": [section]})

    with pytest.raises(NotifierError) as raised:
        await notifier.send(payload, webhook_id="msg_1")
    await notifier.aclose()

    assert raised.value.retryable is False
    assert "invalid_blocks" in str(raised.value)
    assert "must be less than 3001 characters [json-pointer:/blocks/0]" in str(raised.value)


async def test_slack_webhook_notifier_classifies_gone_as_final(slack_server: SlackServer) -> None:
    path = "T1/B1/gone"
    slack_server.state.webhook_paths[path] = "#pager"
    slack_server.state.archived_webhook_paths.add(path)
    notifier = SlackWebhookNotifier("pager", url=slack_server.webhook_url(path))

    with pytest.raises(NotifierError) as raised:
        await notifier.send(_payload_for(notifier), webhook_id="msg_1")
    await notifier.aclose()

    assert raised.value.retryable is False
    assert "channel_is_archived" in str(raised.value)
    assert path not in str(raised.value)


async def test_webhook_notifier_without_secret_sends_unsigned(
    webhook_receiver: WebhookReceiver,
) -> None:
    notifier = WebhookNotifier("soc", url=webhook_receiver.url, secret=None)

    with pytest.raises(NotifierError, match="HTTP 401") as raised:
        await notifier.send('{"version":1}', webhook_id="msg_unsigned")
    await notifier.aclose()

    (attempt,) = webhook_receiver.state.attempts
    assert raised.value.retryable is False
    assert attempt.webhook_id == "msg_unsigned"
    assert attempt.status == 401
    assert webhook_receiver.state.rejected_signatures == 1


async def test_webhook_notifier_connection_refused_is_retryable(
    unused_tcp_port: int,
) -> None:
    notifier = WebhookNotifier(
        "soc", url=f"http://127.0.0.1:{unused_tcp_port}/hooks", secret=WEBHOOK_SECRET
    )

    with pytest.raises(NotifierError) as raised:
        await notifier.send("{}", webhook_id="msg_1")
    await notifier.aclose()

    assert raised.value.retryable is True
    assert str(unused_tcp_port) not in str(raised.value)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("30", 30.0),
        ("0.5", 0.5),
        ("-3", 0.0),
        ("999999", 3600.0),
        ("Wed, 01 Jan 2031 00:01:00 GMT", 60.0),
        ("soon", None),
        ("nan", None),
        (None, None),
        ("", None),
    ],
)
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    now = datetime(2031, 1, 1, tzinfo=UTC)

    assert parse_retry_after(header, now=now) == seconds


def test_backoff_grows_with_jitter_and_caps() -> None:
    rng = random.Random(7)

    delays = [
        backoff_delay_s(attempts, base_delay_s=60, max_delay_s=3600, rng=rng)
        for attempts in range(1, 10)
    ]

    ceilings = [min(60 * 2 ** (attempts - 1), 3600) for attempts in range(1, 10)]
    assert all(
        ceiling / 2 <= delay <= ceiling for delay, ceiling in zip(delays, ceilings, strict=True)
    )
    assert backoff_delay_s(3, base_delay_s=60, max_delay_s=3600, retry_after_s=5) == 5


def _payload_for(notifier: SlackNotifier | SlackWebhookNotifier) -> str:
    from service.notifiers.render import render_deliveries

    (message,) = render_deliveries(batch([item(1)]), notifier.name, notifier)
    return message.payload
