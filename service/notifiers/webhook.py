"""The `webhook` notifier: a signed JSON POST with aiohttp, as Standard Webhooks describe.

The body is the stored payload's UTF-8 bytes, identical on every attempt, and `webhook-id` is
the delivery's stable id, so a receiver drops duplicates by id. Redirects are not followed:
a redirected POST would lose its body or reach an address that
is not configured.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp

from service.digitalocean.models import Severity
from service.logging import register_secret
from service.notifiers.base import NotifierBase, PayloadFormat
from service.notifiers.http import LoopBoundSession
from service.notifiers.retry import error_for_status, error_for_transport
from service.notifiers.signing import WebhookSigner

# Slack's pace does not apply to webhooks. Receivers that need fewer requests return 429.
WEBHOOK_MIN_INTERVAL_S = 0.0


class WebhookNotifier(NotifierBase):
    """POSTs the versioned JSON payload, signed with the notifier's own secret.

    Without a secret the requests carry `webhook-id` and `webhook-timestamp` but no
    signature, and receivers cannot tell them from forgeries.
    """

    payload_format = PayloadFormat.WEBHOOK

    def __init__(
        self,
        name: str,
        *,
        url: str,
        secret: str | None,
        min_severity: Severity = Severity.LOW,
        timeout_s: float = 10.0,
        min_interval_s: float = WEBHOOK_MIN_INTERVAL_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"notifier {name!r}: the webhook URL must start with https://")
        self._signer: WebhookSigner | None = None
        if secret is not None:
            register_secret(secret)
            try:
                self._signer = WebhookSigner(secret)
            except ValueError as error:
                raise ValueError(f"notifier {name!r}: {error}") from None
        register_secret(url)
        super().__init__(name, min_severity=min_severity, min_interval_s=min_interval_s)
        self._url = url
        self._clock = clock
        self._session = LoopBoundSession(timeout_s=timeout_s)

    @property
    def channel_key(self) -> str:
        # A digest stands for the URL, which may carry a token in its path or query.
        return f"webhook:{hashlib.sha256(self._url.encode()).hexdigest()[:16]}"

    def __repr__(self) -> str:
        return f"WebhookNotifier(name={self._name!r})"

    async def send(self, payload: str, *, webhook_id: str) -> None:
        """POST `payload` signed for this attempt; any 2xx response is success."""
        body = payload.encode("utf-8")
        headers = {"Content-Type": "application/json", **self._identity_headers(webhook_id, body)}
        session, _ = self._session.get()
        what = f"the webhook of notifier {self._name}"
        try:
            async with session.post(
                self._url, data=body, headers=headers, allow_redirects=False
            ) as response:
                if 200 <= response.status < 300:
                    return
                raise error_for_status(response.status, response.headers.get("Retry-After"), what)
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as error:
            raise error_for_transport(error, what) from None

    async def aclose(self) -> None:
        await self._session.aclose()

    def _identity_headers(self, webhook_id: str, body: bytes) -> dict[str, str]:
        sent_at = self._clock()
        if self._signer is None:
            return {"webhook-id": webhook_id, "webhook-timestamp": str(int(sent_at.timestamp()))}
        return self._signer.headers(webhook_id, body, sent_at)
