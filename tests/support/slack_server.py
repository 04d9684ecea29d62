"""A small Slack Web API and incoming-webhook server for tests (aiohttp on 127.0.0.1).

It handles `chat.postMessage` as Slack documents it: the bearer token and the channel are
checked, Block Kit limits are enforced (50 blocks, 3,000 characters of section text, 150 of
header text, unique block ids), the total text of the blocks is held under a configurable
limit that stands for Slack's undocumented `msg_blocks_too_long` threshold, and errors come
as `{"ok": false, "error": ...}`. Incoming webhooks answer `ok` or a plain-text error code with
the HTTP status Slack uses. Scripted faults (429 with Retry-After, 5xx, `ok: false` codes,
dropped connections, an outage) come first, in order.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

SLACK_MAX_BLOCKS = 50
SLACK_MAX_SECTION_TEXT = 3000
SLACK_MAX_HEADER_TEXT = 150
SLACK_MAX_BLOCK_ID = 255
SLACK_MAX_CONTEXT_ELEMENTS = 10
# Reports put Slack's undocumented cumulative limit between about 11,300 and 13,300
# characters of block text; the fake uses the lower end.
DEFAULT_BLOCKS_TEXT_LIMIT = 11_300


@dataclass(frozen=True)
class Fault:
    """One scripted response that replaces normal handling of the next request."""

    status: int = 200
    error: str | None = None
    retry_after_s: int | None = None
    drop_connection: bool = False
    body_text: str | None = None


@dataclass(frozen=True)
class ReceivedMessage:
    """A message the server accepted, with the monotonic time it arrived."""

    channel: str
    body: dict[str, Any]
    received_at: float


@dataclass
class SlackServerState:
    token: str
    channels: set[str]
    not_in_channels: set[str] = field(default_factory=set)
    archived_channels: set[str] = field(default_factory=set)
    webhook_paths: dict[str, str] = field(default_factory=dict)  # path -> channel
    archived_webhook_paths: set[str] = field(default_factory=set)
    blocks_text_limit: int = DEFAULT_BLOCKS_TEXT_LIMIT
    faults: deque[Fault] = field(default_factory=deque)
    down: bool = False
    accepted: list[ReceivedMessage] = field(default_factory=list)
    rejected: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    request_count: int = 0
    message_arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def messages_in(self, channel: str) -> list[ReceivedMessage]:
        return [message for message in self.accepted if message.channel == channel]


class SlackServer:
    """The running server: `api_url` for AsyncWebClient, `webhook_url(path)` for webhooks."""

    def __init__(self, state: SlackServerState, base_url: str):
        self.state = state
        self.base_url = base_url

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    def webhook_url(self, path: str) -> str:
        return f"{self.base_url}/services/{path}"


@asynccontextmanager
async def run_slack_server(
    *,
    token: str,
    channels: set[str],
    webhook_paths: dict[str, str] | None = None,
    blocks_text_limit: int = DEFAULT_BLOCKS_TEXT_LIMIT,
) -> AsyncIterator[SlackServer]:
    """Run the server on a free port of 127.0.0.1 until the block ends."""
    state = SlackServerState(
        token=token,
        channels=set(channels),
        webhook_paths=dict(webhook_paths or {}),
        blocks_text_limit=blocks_text_limit,
    )
    app = web.Application()
    app.router.add_post("/api/chat.postMessage", _post_message_handler(state))
    app.router.add_post("/services/{path:.+}", _webhook_handler(state))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield SlackServer(state, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


def _post_message_handler(state: SlackServerState) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        state.request_count += 1
        scripted = await _scripted_answer(state, request, webhook=False)
        if scripted is not None:
            return scripted
        if request.headers.get("Authorization") != f"Bearer {state.token}":
            return _api_error("invalid_auth")
        body = await _read_body(request)
        channel = str(body.get("channel", ""))
        channel_error = _channel_error(state, channel)
        if channel_error is not None:
            state.rejected.append((channel_error, body))
            return _api_error(channel_error)
        problem = _message_problem(body, state.blocks_text_limit)
        if problem is not None:
            state.rejected.append((problem[0], body))
            return _api_error(*problem)
        _accept(state, channel, body)
        return web.json_response({"ok": True, "channel": channel, "ts": f"{time.time():.6f}"})

    return handle


def _webhook_handler(state: SlackServerState) -> Any:
    async def handle(request: web.Request) -> web.StreamResponse:
        state.request_count += 1
        scripted = await _scripted_answer(state, request, webhook=True)
        if scripted is not None:
            return scripted
        path = request.match_info["path"]
        if path in state.archived_webhook_paths:
            return web.Response(status=410, text="channel_is_archived")
        if path not in state.webhook_paths:
            return web.Response(status=404, text="no_service")
        body = await _read_body(request)
        error = _message_error(body, state.blocks_text_limit)
        if error is not None:
            state.rejected.append((error, body))
            return web.Response(status=400, text=error)
        _accept(state, state.webhook_paths[path], body)
        return web.Response(status=200, text="ok")

    return handle


async def _scripted_answer(
    state: SlackServerState, request: web.Request, *, webhook: bool
) -> web.StreamResponse | None:
    if state.down:
        return web.Response(status=503, text="upstream connect error")
    if not state.faults:
        return None
    fault = state.faults.popleft()
    if fault.drop_connection:
        await request.read()
        assert request.transport is not None
        request.transport.close()
        raise asyncio.CancelledError
    headers = {"Retry-After": str(fault.retry_after_s)} if fault.retry_after_s is not None else {}
    if fault.body_text is not None or webhook:
        text = fault.body_text if fault.body_text is not None else (fault.error or "error")
        return web.Response(status=fault.status, text=text, headers=headers)
    if fault.error is not None:
        return web.json_response(
            {"ok": False, "error": fault.error}, status=fault.status, headers=headers
        )
    return web.Response(status=fault.status, text="server error", headers=headers)


async def _read_body(request: web.Request) -> dict[str, Any]:
    raw = await request.text()
    if request.content_type == "application/json":
        parsed = json.loads(raw)
        return parsed if isinstance(parsed, dict) else {}
    fields: dict[str, Any] = dict(parse_qsl(raw))
    if isinstance(fields.get("blocks"), str):
        fields["blocks"] = json.loads(fields["blocks"])
    return fields


def _channel_error(state: SlackServerState, channel: str) -> str | None:
    if channel in state.archived_channels:
        return "is_archived"
    if channel in state.not_in_channels:
        return "not_in_channel"
    if channel not in state.channels:
        return "channel_not_found"
    return None


def _message_error(body: dict[str, Any], blocks_text_limit: int) -> str | None:
    problem = _message_problem(body, blocks_text_limit)
    return problem[0] if problem else None


def _message_problem(body: dict[str, Any], blocks_text_limit: int) -> tuple[str, str] | None:
    """The error code and Slack-style detail of what breaks a limit, or None."""
    blocks = body.get("blocks")
    text = body.get("text")
    if not blocks and not text:
        return ("no_text", "")
    if blocks is None:
        return None
    if not isinstance(blocks, list) or len(blocks) > SLACK_MAX_BLOCKS:
        return ("invalid_blocks", "[ERROR] no more than 50 items allowed [json-pointer:/blocks]")
    for index, block in enumerate(blocks):
        problem = _block_problem(block)
        if problem:
            return ("invalid_blocks", f"[ERROR] {problem} [json-pointer:/blocks/{index}]")
    if _duplicate_block_ids(blocks):
        return ("invalid_blocks", "[ERROR] block_id must be unique [json-pointer:/blocks]")
    if sum(_texts_length(block) for block in blocks) > blocks_text_limit:
        return ("msg_blocks_too_long", "")
    return None


def _block_problem(block: Any) -> str | None:
    if not isinstance(block, dict):
        return "must be an object"
    if len(str(block.get("block_id", ""))) > SLACK_MAX_BLOCK_ID:
        return f"block_id must be less than {SLACK_MAX_BLOCK_ID + 1} characters"
    kind = block.get("type")
    text = block.get("text") or {}
    if kind == "header":
        if text.get("type") != "plain_text":
            return "header text must be plain_text"
        if len(text.get("text", "")) > SLACK_MAX_HEADER_TEXT:
            return f"must be less than {SLACK_MAX_HEADER_TEXT + 1} characters"
        return None
    if kind == "section":
        if len(text.get("text", "")) > SLACK_MAX_SECTION_TEXT:
            return f"must be less than {SLACK_MAX_SECTION_TEXT + 1} characters"
        return None
    if kind == "context":
        elements = block.get("elements") or []
        if len(elements) > SLACK_MAX_CONTEXT_ELEMENTS:
            return f"no more than {SLACK_MAX_CONTEXT_ELEMENTS} items allowed"
        if any(len(element.get("text", "")) > SLACK_MAX_SECTION_TEXT for element in elements):
            return f"must be less than {SLACK_MAX_SECTION_TEXT + 1} characters"
        return None
    return None if kind == "divider" else f"unsupported block type {kind!r}"


def _duplicate_block_ids(blocks: list[Any]) -> bool:
    ids = [block.get("block_id") for block in blocks if isinstance(block, dict)]
    present = [block_id for block_id in ids if block_id]
    return len(present) != len(set(present))


def _texts_length(value: Any) -> int:
    if isinstance(value, dict):
        return sum(
            len(item) if key == "text" and isinstance(item, str) else _texts_length(item)
            for key, item in value.items()
        )
    if isinstance(value, list):
        return sum(_texts_length(item) for item in value)
    return 0


def _accept(state: SlackServerState, channel: str, body: dict[str, Any]) -> None:
    state.accepted.append(ReceivedMessage(channel, body, time.monotonic()))
    state.message_arrived.set()


def _api_error(error: str, detail: str = "") -> web.Response:
    # Slack returns most method errors with HTTP 200 and ok: false. For invalid_blocks it
    # names the broken limit in response_metadata.
    body: dict[str, Any] = {"ok": False, "error": error}
    if detail:
        body["response_metadata"] = {"messages": [detail]}
    return web.json_response(body)
