"""The `slack_webhook` notifier: a Slack incoming webhook through slack-sdk's AsyncWebhookClient.

The webhook URL is the secret. It is registered for redaction, never put in an error message,
and the SDK gets its own logger at WARNING, because the SDK logs the URL at DEBUG and INFO when
it retries (slack-sdk 3.x, `slack_sdk/webhook/async_client.py`).
"""

from __future__ import annotations

import hashlib
import json
import logging

import aiohttp
from slack_sdk.webhook.async_client import AsyncWebhookClient

from service.digitalocean.models import Severity
from service.logging import register_secret
from service.notifiers.base import NotifierBase, PayloadFormat
from service.notifiers.http import LoopBoundSession
from service.notifiers.retry import error_for_transport
from service.notifiers.slack import SLACK_MIN_INTERVAL_S
from service.notifiers.slack_errors import error_for_slack_answer

_sdk_logger = logging.getLogger(f"{__name__}.sdk")
_sdk_logger.setLevel(logging.WARNING)


class SlackWebhookNotifier(NotifierBase):
    """Posts rendered Block Kit messages to the channel of one incoming webhook."""

    payload_format = PayloadFormat.SLACK

    def __init__(
        self,
        name: str,
        *,
        url: str,
        min_severity: Severity = Severity.LOW,
        timeout_s: float = 30.0,
        min_interval_s: float = SLACK_MIN_INTERVAL_S,
    ):
        if not url.startswith(("https://", "http://")):
            raise ValueError(
                f"notifier {name!r}: the Slack webhook URL must start with https:// "
                "(copy it from the app's Incoming Webhooks page)"
            )
        register_secret(url)
        super().__init__(name, min_severity=min_severity, min_interval_s=min_interval_s)
        self._url = url
        self._timeout_s = timeout_s
        self._session = LoopBoundSession(timeout_s=timeout_s)
        self._client: AsyncWebhookClient | None = None

    @property
    def channel_key(self) -> str:
        # A digest stands for the URL, which is the secret.
        digest = hashlib.sha256(self._url.encode()).hexdigest()[:16]
        return f"slack_webhook:{digest}"

    def __repr__(self) -> str:
        return f"SlackWebhookNotifier(name={self._name!r})"

    async def send(self, payload: str, *, webhook_id: str) -> None:
        """Post `payload` to the webhook; `webhook_id` is not used by Slack."""
        client = self._client_for_loop()
        what = f"notifier {self._name}"
        try:
            response = await client.send_dict(body=_json_object(payload))
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as error:
            raise error_for_transport(error, f"the Slack webhook of {what}") from None
        if response.status_code == 200:
            return
        code = response.body.strip() if isinstance(response.body, str) else ""
        raise error_for_slack_answer(
            status=response.status_code,
            code=_error_code(code),
            retry_after=response.headers.get("Retry-After") if response.headers else None,
            what=what,
        )

    async def aclose(self) -> None:
        await self._session.aclose()
        self._client = None

    def _client_for_loop(self) -> AsyncWebhookClient:
        session, opened = self._session.get()
        if self._client is None or opened:
            self._client = AsyncWebhookClient(
                url=self._url,
                timeout=int(self._timeout_s),
                session=session,
                logger=_sdk_logger,
                retry_handlers=[],
            )
        return self._client


def _json_object(payload: str) -> dict[str, object]:
    body = json.loads(payload)
    if not isinstance(body, dict):
        raise ValueError("a Slack payload must be a JSON object")
    return body


def _error_code(body: str) -> str | None:
    """Slack's error code from a webhook response body (`channel_is_archived`), if it is one."""
    if body and len(body) <= 64 and body.replace("_", "").isalnum():
        return body
    return None
