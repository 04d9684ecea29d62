"""Fixtures of the notifier tests: a migrated database (SQLite and PostgreSQL), a fake clock,
the fake Slack server and the webhook receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from service.notifiers.base import Notifier
from tests.notifiers.support import FakeClock
from tests.storage.conftest import blank_database_url, database
from tests.support.slack_server import SlackServer, run_slack_server
from tests.support.webhook_receiver import WebhookReceiver, run_webhook_receiver

# Re-exported so that pytest finds the storage fixtures in this folder too.
__all__ = ["blank_database_url", "database"]

SLACK_TOKEN = "xoxb-1111111111-2222222222-TestOnlyTokenValue"
SLACK_CHANNEL = "#security"
SLACK_WEBHOOK_PATH = "T0000TEST/B0000TEST/TestOnlyWebhookPathSecret"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 5, 1, 6, 0, tzinfo=UTC) + timedelta(days=1))


@pytest.fixture
async def opened_notifiers() -> AsyncIterator[list[Notifier]]:
    """Notifiers that a test appends here are closed when it ends, even when it fails."""
    notifiers: list[Notifier] = []
    yield notifiers
    for notifier in notifiers:
        await notifier.aclose()


@pytest.fixture
async def slack_server() -> AsyncIterator[SlackServer]:
    async with run_slack_server(
        token=SLACK_TOKEN,
        channels={SLACK_CHANNEL, "#pager"},
        webhook_paths={SLACK_WEBHOOK_PATH: "#pager"},
    ) as server:
        yield server


@pytest.fixture
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    async with run_webhook_receiver(secret=WEBHOOK_SECRET) as receiver:
        yield receiver
