"""A webhook receiver for tests (aiohttp on 127.0.0.1) that verifies Standard Webhooks signatures.

Every request is checked with the `standardwebhooks` package, the reference implementation a
receiver would use. Accepted messages are counted by `webhook-id`, with their exact body bytes.
Scripted statuses (500, 429 with Retry-After, 410) are returned first, in order. With `hold`
set, the receiver records a message, sets `message_arrived` and never responds, so a test can
kill the sender between sending and recording.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

WEBHOOK_PATH = "/hooks/cspm"


@dataclass(frozen=True)
class ScriptedAnswer:
    status: int
    retry_after_s: int | None = None


@dataclass(frozen=True)
class Attempt:
    """One request as it arrived, whatever the response."""

    webhook_id: str
    timestamp: str
    body: bytes
    status: int


@dataclass
class ReceiverState:
    secret: str
    answers: deque[ScriptedAnswer] = field(default_factory=deque)
    hold: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    ids: Counter[str] = field(default_factory=Counter)
    bodies: dict[str, list[bytes]] = field(default_factory=dict)
    rejected_signatures: int = 0
    request_count: int = 0
    message_arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def payloads(self) -> list[Any]:
        """The parsed JSON of the first body received under each id, in arrival order."""
        return [json.loads(bodies[0]) for bodies in self.bodies.values()]


class WebhookReceiver:
    def __init__(self, state: ReceiverState, base_url: str):
        self.state = state
        self.url = f"{base_url}{WEBHOOK_PATH}"


@asynccontextmanager
async def run_webhook_receiver(*, secret: str) -> AsyncIterator[WebhookReceiver]:
    """Run the receiver on a free port of 127.0.0.1 until the block ends."""
    state = ReceiverState(secret=secret)
    app = web.Application()
    app.router.add_post(WEBHOOK_PATH, _handler(state))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield WebhookReceiver(state, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


def _handler(state: ReceiverState) -> Any:
    verifier = Webhook(state.secret)

    async def handle(request: web.Request) -> web.StreamResponse:
        state.request_count += 1
        body = await request.read()
        webhook_id = request.headers.get("webhook-id", "")
        timestamp = request.headers.get("webhook-timestamp", "")
        if state.answers:
            answer = state.answers.popleft()
            state.attempts.append(Attempt(webhook_id, timestamp, body, answer.status))
            headers = {}
            if answer.retry_after_s is not None:
                headers["Retry-After"] = str(answer.retry_after_s)
            return web.Response(status=answer.status, text="scripted", headers=headers)
        try:
            verifier.verify(body, dict(request.headers))
        except WebhookVerificationError:
            state.rejected_signatures += 1
            state.attempts.append(Attempt(webhook_id, timestamp, body, 401))
            return web.Response(status=401, text="invalid signature")
        state.attempts.append(Attempt(webhook_id, timestamp, body, 204))
        state.ids[webhook_id] += 1
        state.bodies.setdefault(webhook_id, []).append(body)
        state.message_arrived.set()
        if state.hold:
            await asyncio.Event().wait()
        return web.Response(status=204)

    return handle
