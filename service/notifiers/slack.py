"""The `slack` notifier: a bot token and `chat.postMessage` through slack-sdk's AsyncWebClient.

The SDK's own retries are switched off, because the dispatcher retries with backoff across
process restarts and a hidden retry inside one attempt would escape its pacing and counting.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from service.digitalocean.models import Severity
from service.errors import NotifierError
from service.logging import register_secret
from service.notifiers.base import NotifierBase, PayloadFormat
from service.notifiers.http import LoopBoundSession
from service.notifiers.retry import error_for_transport
from service.notifiers.slack_errors import error_for_slack_answer

DEFAULT_API_URL = "https://slack.com/api/"
# Slack allows posting about one message a second per channel, with short bursts
# (https://docs.slack.dev/apis/web-api/rate-limits, "Posting messages").
SLACK_MIN_INTERVAL_S = 1.0

# slack-sdk logs request details at DEBUG when its logger's own level allows it. A logger set
# to WARNING keeps them out of the service's logs whatever the root level is.
_sdk_logger = logging.getLogger(f"{__name__}.sdk")
_sdk_logger.setLevel(logging.WARNING)


class SlackNotifier(NotifierBase):
    """Posts rendered Block Kit messages to one channel with a bot token."""

    payload_format = PayloadFormat.SLACK

    def __init__(
        self,
        name: str,
        *,
        token: str,
        channel: str,
        api_url: str = DEFAULT_API_URL,
        min_severity: Severity = Severity.LOW,
        timeout_s: float = 30.0,
        min_interval_s: float = SLACK_MIN_INTERVAL_S,
    ):
        if not token.strip():
            raise ValueError(f"notifier {name!r}: the Slack bot token is empty")
        if not channel.strip():
            raise ValueError(f"notifier {name!r}: `channel` is empty; set a channel name or id")
        register_secret(token)
        super().__init__(name, min_severity=min_severity, min_interval_s=min_interval_s)
        self._token = token
        self._channel = channel
        self._api_url = api_url if api_url.endswith("/") else f"{api_url}/"
        self._timeout_s = timeout_s
        self._session = LoopBoundSession(timeout_s=timeout_s)
        self._client: AsyncWebClient | None = None

    @property
    def channel_key(self) -> str:
        return f"slack:{self._api_url}:{self._channel}"

    def __repr__(self) -> str:
        return f"SlackNotifier(name={self._name!r}, channel={self._channel!r})"

    async def send(self, payload: str, *, webhook_id: str) -> None:
        """Post `payload` to the channel; `webhook_id` is not used by Slack."""
        body: dict[str, Any] = json.loads(payload)
        client = self._client_for_loop()
        try:
            await client.chat_postMessage(channel=self._channel, **body)
        except SlackApiError as error:
            raise self._classify(error) from None
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as error:
            raise error_for_transport(error, f"Slack for notifier {self._name}") from None

    async def aclose(self) -> None:
        await self._session.aclose()
        self._client = None

    def _client_for_loop(self) -> AsyncWebClient:
        session, opened = self._session.get()
        if self._client is None or opened:
            self._client = AsyncWebClient(
                token=self._token,
                base_url=self._api_url,
                timeout=int(self._timeout_s),
                session=session,
                logger=_sdk_logger,
                retry_handlers=[],
            )
        return self._client

    def _classify(self, error: SlackApiError) -> NotifierError:
        response = error.response
        data = response.data if isinstance(response.data, dict) else {}
        code = data.get("error")
        classified = error_for_slack_answer(
            status=response.status_code,
            code=code if isinstance(code, str) else None,
            retry_after=response.headers.get("Retry-After") if response.headers else None,
            what=f"notifier {self._name}",
        )
        detail = _first_metadata_message(data)
        if detail and not classified.retryable:
            # For invalid_blocks, Slack names the block and the limit it broke here.
            classified.args = (f"{classified.args[0]}: {detail}",)
        return classified


def _first_metadata_message(data: dict[str, Any]) -> str | None:
    metadata = data.get("response_metadata")
    messages = metadata.get("messages") if isinstance(metadata, dict) else None
    if not isinstance(messages, list) or not messages:
        return None
    return str(messages[0])[:300]
