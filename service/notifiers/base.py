"""The protocol every notifier implements, and the message it is given to send."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from service.digitalocean.models import Severity
from service.notifiers.content import BatchKind


class PayloadFormat(enum.Enum):
    """How a batch is rendered for a notifier."""

    SLACK = "slack"  # a Block Kit message: {"text", "blocks", ...} without the channel
    WEBHOOK = "webhook"  # the versioned JSON payload described in docs/webhook-payload.md
    CONSOLE = "console"  # {"text": ...}, printed as it is


@runtime_checkable
class Notifier(Protocol):
    """One configured destination.

    `send` raises `NotifierError` with `retryable` set when another attempt can succeed, and
    `MessageTooLongError` when the receiver rejects the message for its size.
    """

    @property
    def name(self) -> str:
        """The notifier's name in the configuration."""
        ...

    @property
    def payload_format(self) -> PayloadFormat: ...

    @property
    def min_severity(self) -> Severity:
        """Findings below this severity never reach this notifier."""
        ...

    @property
    def channel_key(self) -> str:
        """Identity of the destination, shared by notifiers that post to the same place, so
        that the dispatcher paces them together. It never contains a secret."""
        ...

    @property
    def min_interval_s(self) -> float:
        """Minimum time between two messages to this notifier's channel."""
        ...

    async def send(self, payload: str, *, webhook_id: str) -> None:
        """Send one rendered payload. `webhook_id` is stable across attempts."""
        ...

    async def aclose(self) -> None:
        """Release connections; the notifier cannot send afterwards."""
        ...


class NotifierBase:
    """The name, severity threshold and pace that every notifier keeps the same way."""

    def __init__(self, name: str, *, min_severity: Severity, min_interval_s: float) -> None:
        self._name = name
        self._min_severity = min_severity
        self._min_interval_s = min_interval_s

    @property
    def name(self) -> str:
        return self._name

    @property
    def min_severity(self) -> Severity:
        return self._min_severity

    @property
    def min_interval_s(self) -> float:
        return self._min_interval_s


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxMessage:
    """One rendered message for one notifier, ready to be stored as a delivery row.

    `payload` is the exact JSON text to send (for the webhook notifier its UTF-8 encoding is
    the request body, byte for byte, on every attempt). `dedupe_key` is the same whenever the
    same items of the same scan are rendered for the same notifier, so a second enqueue of a
    batch is a unique-constraint conflict instead of a second message.
    """

    target: str
    scan_id: str | None
    notifier_name: str
    kind: BatchKind
    dedupe_key: str
    webhook_id: str
    payload: str
    item_count: int
