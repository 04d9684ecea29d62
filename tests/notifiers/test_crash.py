"""A dispatcher process killed between sending and recording: the message arrives at most twice,
with the same webhook-id and body, and is then recorded sent."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.notifiers.render import render_deliveries
from service.notifiers.webhook import WebhookNotifier
from tests.notifiers.conftest import WEBHOOK_SECRET
from tests.notifiers.dispatch_process import SECRET_VARIABLE
from tests.notifiers.factories import batch, item
from tests.notifiers.support import delivery_rows, enqueue
from tests.storage.conftest import TestDatabase
from tests.support.webhook_receiver import WebhookReceiver

REPOSITORY = Path(__file__).resolve().parents[2]
# Longer than the dispatcher's default claim timeout (300 s), so the restarted process may
# take over the claim of the killed one.
AFTER_CLAIM_EXPIRED_S = 600


async def start_dispatcher(
    database: TestDatabase, receiver: WebhookReceiver, clock_offset_s: float = 0
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.notifiers.dispatch_process",
        database.url,
        receiver.url,
        str(clock_offset_s),
        cwd=REPOSITORY,
        env={**os.environ, SECRET_VARIABLE: WEBHOOK_SECRET},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(process: asyncio.subprocess.Process) -> tuple[dict[str, int], str]:
    """Wait for a dispatcher process; return its report and its standard error."""
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    return json.loads(stdout.decode().strip().splitlines()[-1]), stderr.decode()


@pytest.mark.slow
async def test_dispatcher_killed_after_send_resends_at_most_once(
    database: TestDatabase, webhook_receiver: WebhookReceiver
) -> None:
    notifier = WebhookNotifier("soc", url=webhook_receiver.url, secret=WEBHOOK_SECRET)
    messages = render_deliveries(batch([item(1)]), "soc", notifier)
    await enqueue(database.sessions, messages, created_at=datetime.now(UTC))
    webhook_receiver.state.hold = True

    killed = await start_dispatcher(database, webhook_receiver)
    await webhook_receiver.state.message_arrived.wait()
    killed.send_signal(signal.SIGKILL)
    await killed.wait()
    (abandoned,) = await delivery_rows(database.sessions)
    webhook_receiver.state.hold = False

    too_early, _ = await finish(await start_dispatcher(database, webhook_receiver))
    report, stderr = await finish(
        await start_dispatcher(database, webhook_receiver, AFTER_CLAIM_EXPIRED_S)
    )

    (row,) = await delivery_rows(database.sessions)
    assert killed.returncode == -signal.SIGKILL
    assert (abandoned.status, abandoned.attempts) == ("sending", 1)
    assert too_early["sent"] == 0
    assert report["sent"] == 1
    assert (row.status, row.attempts) == ("sent", 2)
    assert webhook_receiver.state.ids[row.webhook_id] == 2
    assert list(webhook_receiver.state.ids) == [row.webhook_id]
    first_body, second_body = webhook_receiver.state.bodies[row.webhook_id]
    assert first_body == second_body == row.payload.encode("utf-8")
    assert WEBHOOK_SECRET not in stderr
    assert WEBHOOK_SECRET.removeprefix("whsec_") not in stderr
