"""The `console` notifier: prints each message readably to standard output."""

from __future__ import annotations

import json
import sys
from typing import TextIO

from service.digitalocean.models import Severity
from service.notifiers.base import NotifierBase, PayloadFormat


class ConsoleNotifier(NotifierBase):
    """Writes the text of each message to a stream, standard output by default."""

    payload_format = PayloadFormat.CONSOLE

    def __init__(
        self, name: str, *, min_severity: Severity = Severity.LOW, stream: TextIO | None = None
    ):
        super().__init__(name, min_severity=min_severity, min_interval_s=0.0)
        self._stream = stream

    @property
    def channel_key(self) -> str:
        return f"console:{self._name}"

    def __repr__(self) -> str:
        return f"ConsoleNotifier(name={self._name!r})"

    async def send(self, payload: str, *, webhook_id: str) -> None:
        """Print the payload's text followed by a blank line."""
        text = json.loads(payload)["text"]
        # Looked up at each call so that a redirected or captured sys.stdout is honoured.
        stream = self._stream or sys.stdout
        stream.write(f"{text}\n\n")
        stream.flush()

    async def aclose(self) -> None:
        return None
