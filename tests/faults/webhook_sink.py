"""A webhook receiver for the fault suite (aiohttp on 127.0.0.1).

Like tests/support/webhook_receiver.py it verifies every Standard Webhooks signature with the
`standardwebhooks` package and counts messages by `webhook-id`. It adds what the fault cases
need: an outage switch (`down_status`, optionally with Retry-After) that can be turned off
again, and a hold that is released by the test, so a sender can be killed or stopped between
sending a message and recording it.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

WEBHOOK_PATH = "/hooks/cspm"


@dataclass
class SinkState:
    """What arrived: accepted messages in order, counts by webhook-id, and refusals."""

    secret: str
    down_status: int | None = None
    down_retry_after_s: int | None = None
    hold_next: bool = False
    held: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    accepted: list[tuple[str, bytes]] = field(default_factory=list)
    ids: Counter[str] = field(default_factory=Counter)
    refused: int = 0
    bad_signatures: int = 0

    def first_bodies(self) -> list[Any]:
        """The parsed body of the first arrival of each webhook-id, in arrival order."""
        seen: set[str] = set()
        bodies = []
        for webhook_id, body in self.accepted:
            if webhook_id not in seen:
                seen.add(webhook_id)
                bodies.append(json.loads(body))
        return bodies

    def repeated_ids(self) -> dict[str, int]:
        return {webhook_id: count for webhook_id, count in self.ids.items() if count > 1}


class WebhookSink:
    def __init__(self, state: SinkState, base_url: str) -> None:
        self.state = state
        self.url = f"{base_url}{WEBHOOK_PATH}"


@asynccontextmanager
async def run_webhook_sink(*, secret: str) -> AsyncIterator[WebhookSink]:
    """Run the receiver on a free port of 127.0.0.1 until the block ends."""
    state = SinkState(secret=secret)
    app = web.Application()
    app.router.add_post(WEBHOOK_PATH, _handler(state))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield WebhookSink(state, f"http://127.0.0.1:{port}")
    finally:
        state.released.set()
        await runner.cleanup()


def _handler(state: SinkState) -> Any:
    verifier = Webhook(state.secret)

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if state.down_status is not None:
            state.refused += 1
            headers = {}
            if state.down_retry_after_s is not None:
                headers["Retry-After"] = str(state.down_retry_after_s)
            return web.Response(status=state.down_status, text="receiver down", headers=headers)
        try:
            verifier.verify(body, dict(request.headers))
        except WebhookVerificationError:
            state.bad_signatures += 1
            return web.Response(status=401, text="invalid signature")
        webhook_id = request.headers["webhook-id"]
        state.accepted.append((webhook_id, body))
        state.ids[webhook_id] += 1
        if state.hold_next:
            state.hold_next = False
            state.held.set()
            await state.released.wait()
        return web.Response(status=204)

    return handle
