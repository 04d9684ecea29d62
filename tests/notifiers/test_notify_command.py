"""`cspm-watch notify test` as a process, against the fake Slack server and the receiver."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.notifiers.conftest import SLACK_TOKEN, SLACK_WEBHOOK_PATH, WEBHOOK_SECRET
from tests.support.slack_server import SlackServer
from tests.support.webhook_receiver import WebhookReceiver

REPOSITORY = Path(__file__).resolve().parents[2]


def write_config(path: Path, slack_server: SlackServer, receiver: WebhookReceiver) -> None:
    path.write_text(
        f"""
targets:
  - name: production
    token_env: TEST_DO_TOKEN
notifiers:
  security: {{type: slack, token_env: TEST_SLACK_TOKEN, channel: "#security",
             api_url: "{slack_server.api_url}"}}
  missing: {{type: slack, token_env: TEST_SLACK_TOKEN, channel: "#no-such-channel",
            api_url: "{slack_server.api_url}"}}
  pager: {{type: slack_webhook, url_env: TEST_SLACK_WEBHOOK_URL}}
  soc: {{type: webhook, url: "{receiver.url}", secret_env: TEST_WEBHOOK_SECRET}}
""",
        encoding="utf-8",
    )


async def run_notify_test(
    config: Path, slack_server: SlackServer, *arguments: str
) -> tuple[int, str, str]:
    environ = {
        **os.environ,
        "TEST_DO_TOKEN": "dop_v1_" + "a" * 64,
        "TEST_SLACK_TOKEN": SLACK_TOKEN,
        "TEST_SLACK_WEBHOOK_URL": slack_server.webhook_url(SLACK_WEBHOOK_PATH),
        "TEST_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service",
        "--config",
        str(config),
        "notify",
        "test",
        *arguments,
        cwd=REPOSITORY,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.mark.slow
async def test_notify_test_reports_each_notifier(
    tmp_path: Path, slack_server: SlackServer, webhook_receiver: WebhookReceiver
) -> None:
    config = tmp_path / "cspm-watch.yaml"
    write_config(config, slack_server, webhook_receiver)

    code, stdout, stderr = await run_notify_test(config, slack_server)

    assert code == 1
    assert sorted(stdout.splitlines()) == [
        "missing: failed: notifier missing: channel_not_found: the channel does not exist or "
        "the bot cannot see it; check `channel` (HTTP 200) (final)",
        "pager: sent",
        "security: sent",
        "soc: sent",
    ]
    headers = [message.body["blocks"][0]["text"]["text"] for message in slack_server.state.accepted]
    assert sorted(headers) == [
        "cspm-watch: test message for notifier pager",
        "cspm-watch: test message for notifier security",
    ]
    (payload,) = webhook_receiver.state.payloads()
    assert payload["type"] == "cspm_watch.test"
    for secret in (SLACK_TOKEN, SLACK_WEBHOOK_PATH, WEBHOOK_SECRET):
        assert secret not in stdout + stderr


@pytest.mark.slow
async def test_notify_test_with_unknown_notifier_exits_2(
    tmp_path: Path, slack_server: SlackServer, webhook_receiver: WebhookReceiver
) -> None:
    config = tmp_path / "cspm-watch.yaml"
    write_config(config, slack_server, webhook_receiver)

    code, stdout, stderr = await run_notify_test(config, slack_server, "--notifier", "nope")

    assert code == 2
    assert stdout == ""
    assert "unknown notifier 'nope'; configured notifiers: missing, pager, security, soc" in stderr
    assert slack_server.state.request_count == 0


@pytest.mark.slow
async def test_notify_test_of_one_notifier_sends_only_there(
    tmp_path: Path, slack_server: SlackServer, webhook_receiver: WebhookReceiver
) -> None:
    config = tmp_path / "cspm-watch.yaml"
    write_config(config, slack_server, webhook_receiver)

    code, stdout, _ = await run_notify_test(config, slack_server, "--notifier", "soc")

    assert code == 0
    assert stdout == "soc: sent\n"
    assert slack_server.state.request_count == 0
    assert webhook_receiver.state.request_count == 1
