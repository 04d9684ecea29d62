"""`cspm-watch notify test`: a clearly labelled test message through each notifier, sent at once.

Test messages bypass the outbox: the person running the command wants to know now whether
the notifier works, and a failure is reported to them instead of retried.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import click

from service.config import Settings
from service.errors import NotifierError
from service.notifiers.base import Notifier
from service.notifiers.content import AlertBatch, BatchKind
from service.notifiers.factory import build_notifiers
from service.notifiers.render import render_deliveries

TEST_TARGET = "cspm-watch"

EXIT_ALL_SENT = 0
EXIT_SOME_FAILED = 1
EXIT_UNKNOWN_NOTIFIER = 2


@dataclass(frozen=True, slots=True)
class TestMessageResult:
    """The outcome of one notifier's test message; `error` is None when it was sent."""

    __test__ = False  # not a pytest test class, despite the name

    notifier: str
    error: str | None


async def send_test_messages(
    notifiers: Mapping[str, Notifier], *, now: datetime | None = None
) -> list[TestMessageResult]:
    """Send one test message through each notifier, all at once, and close them."""
    sent_at = now or datetime.now(UTC)
    try:
        return list(
            await asyncio.gather(
                *(_send_one(name, notifier, sent_at) for name, notifier in notifiers.items())
            )
        )
    finally:
        for notifier in notifiers.values():
            await notifier.aclose()


async def _send_one(name: str, notifier: Notifier, sent_at: datetime) -> TestMessageResult:
    batch = AlertBatch(
        kind=BatchKind.TEST, target=TEST_TARGET, scan_id=None, scan_created_at=sent_at
    )
    try:
        for message in render_deliveries(batch, name, notifier, rendered_at=sent_at):
            await notifier.send(message.payload, webhook_id=message.webhook_id)
    except NotifierError as error:
        kind = "retryable" if error.retryable else "final"
        return TestMessageResult(notifier=name, error=f"{error} ({kind})")
    return TestMessageResult(notifier=name, error=None)


async def notify_test_command(settings: Settings, notifier_names: Sequence[str]) -> int:
    """Send test messages through the named notifiers (every one when none is named), print
    one line per notifier, and return the exit code of `cspm-watch notify test`."""
    configured = settings.notifiers
    unknown = [name for name in notifier_names if name not in configured]
    if unknown:
        known = ", ".join(sorted(configured)) or "none is configured"
        click.echo(
            f"error: unknown notifier {unknown[0]!r}; configured notifiers: {known}", err=True
        )
        return EXIT_UNKNOWN_NOTIFIER
    chosen = {name: configured[name] for name in (notifier_names or sorted(configured))}
    results = await send_test_messages(build_notifiers(chosen))
    for result in results:
        outcome = "sent" if result.error is None else f"failed: {result.error}"
        click.echo(f"{result.notifier}: {outcome}")
    if any(result.error is not None for result in results):
        return EXIT_SOME_FAILED
    return EXIT_ALL_SENT
