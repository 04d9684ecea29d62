"""The receiver examples in docs/webhook-payload.md verify what the webhook notifier signs."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.notifiers.signing import WebhookSigner
from tests.notifiers.conftest import WEBHOOK_SECRET

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhook-payload.md"


def python_examples() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)


def signed_request(body: bytes) -> dict[str, str]:
    return WebhookSigner(WEBHOOK_SECRET).headers("msg_doc", body, datetime.now(UTC))


def test_standard_library_example_accepts_a_signed_request_only() -> None:
    namespace: dict[str, Any] = {}
    exec(python_examples()[1], namespace)  # noqa: S102 - runs the documentation's own example
    verify: Callable[..., bool] = namespace["verify"]
    body = b'{"version":1}'
    headers = signed_request(body)
    stale = {**headers, "webhook-timestamp": str(int(time.time()) - 3600)}

    assert verify(WEBHOOK_SECRET, headers, body) is True
    assert verify(WEBHOOK_SECRET, headers, body + b" ") is False
    assert verify(WEBHOOK_SECRET, stale, body) is False
    assert verify("whsec_" + "B" * 32, headers, body) is False


def test_standardwebhooks_example_accepts_and_deduplicates() -> None:
    seen: set[str] = set()

    def already_processed(webhook_id: str) -> bool:
        duplicate = webhook_id in seen
        seen.add(webhook_id)
        return duplicate

    namespace: dict[str, Any] = {"secret": WEBHOOK_SECRET, "already_processed": already_processed}
    exec(python_examples()[0], namespace)  # noqa: S102 - runs the documentation's own example
    body = b'{"version":1}'
    headers = signed_request(body)

    assert namespace["handle"](headers, body) == {"version": 1}
    assert namespace["handle"](headers, body) is None
    assert namespace["handle"](headers, b'{"version":2}') is None
