"""Fixtures of the fault suite: a PostgreSQL schema per test, the simulator's gate, the Slack
fake and the webhook sink."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from service.storage import upgrade_database
from tests.faults.api_gate import ApiGate
from tests.faults.processes import STARTED
from tests.faults.webhook_sink import WebhookSink, run_webhook_sink
from tests.faults.world import SLACK_CHANNEL, SLACK_TOKEN, WEBHOOK_SECRET, Receivers
from tests.storage.conftest import _postgres_schema, postgres_url_or_skip
from tests.support.slack_server import SlackServer, run_slack_server


@pytest.fixture(autouse=True)
async def no_process_left() -> AsyncIterator[None]:
    """Kill any service process that a test started and left running, even when it failed."""
    yield
    while STARTED:
        await STARTED.pop().kill()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """URL of a migrated schema of its own on the shared PostgreSQL server.

    The URL sets an application_name unique to the test, so that the test can find the
    service's connections in pg_stat_activity.
    """
    async for url in _postgres_schema(postgres_url_or_skip()):
        named = make_url(url).update_query_dict(
            {"application_name": f"cspm-faults-{uuid.uuid4().hex[:12]}"}
        )
        text = named.render_as_string(hide_password=False)
        await upgrade_database(text)
        yield text


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cspm-watch.db'}"
    await upgrade_database(url)
    return url


@pytest.fixture
def gate() -> Iterator[ApiGate]:
    """Holds and replacements for the simulator; held requests are let go when the test ends."""
    planned = ApiGate()
    yield planned
    planned.release_all()


@pytest.fixture
async def slack_server() -> AsyncIterator[SlackServer]:
    async with run_slack_server(token=SLACK_TOKEN, channels={SLACK_CHANNEL}) as server:
        yield server


@pytest.fixture
async def webhook_sink() -> AsyncIterator[WebhookSink]:
    async with run_webhook_sink(secret=WEBHOOK_SECRET) as sink:
        yield sink


@pytest.fixture
def receivers(slack_server: SlackServer, webhook_sink: WebhookSink) -> Receivers:
    return Receivers(slack_api_url=slack_server.api_url, webhook_url=webhook_sink.url)
