"""The dispatcher against the fake Slack server and the webhook receiver, on SQLite and PostgreSQL.

The dispatcher's clock is a fake that the tests move, so backoff and Retry-After are checked
without waiting. Pacing runs in real time, and only its lower bound is asserted.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import timedelta
from itertools import pairwise

import pytest
from prometheus_client import REGISTRY

from service.digitalocean.models import Severity
from service.notifiers.base import Notifier
from service.notifiers.content import AlertBatch
from service.notifiers.dispatcher import Dispatcher, list_deliveries, retry_deliveries
from service.notifiers.render import render_deliveries
from service.notifiers.slack import SlackNotifier
from service.notifiers.slack_webhook import SlackWebhookNotifier
from service.notifiers.webhook import WebhookNotifier
from service.storage import DeliveryStatus
from tests.notifiers.conftest import (
    SLACK_CHANNEL,
    SLACK_TOKEN,
    SLACK_WEBHOOK_PATH,
    WEBHOOK_SECRET,
)
from tests.notifiers.factories import batch, item, slack_texts, unique_rule_name
from tests.notifiers.support import FakeClock, delivery_rows, enqueue
from tests.storage.conftest import TestDatabase
from tests.support.slack_server import Fault, SlackServer
from tests.support.webhook_receiver import ScriptedAnswer, WebhookReceiver


@pytest.fixture
def slack_notifier(
    slack_server: SlackServer, opened_notifiers: list[Notifier]
) -> Callable[..., SlackNotifier]:
    def make(*, min_interval_s: float = 0.0) -> SlackNotifier:
        notifier = SlackNotifier(
            "security",
            token=SLACK_TOKEN,
            channel=SLACK_CHANNEL,
            api_url=slack_server.api_url,
            min_interval_s=min_interval_s,
        )
        opened_notifiers.append(notifier)
        return notifier

    return make


@pytest.fixture
def webhook_notifier(
    webhook_receiver: WebhookReceiver, opened_notifiers: list[Notifier]
) -> Callable[[], WebhookNotifier]:
    def make() -> WebhookNotifier:
        # Signed with the real time, because the receiver checks timestamps against it.
        notifier = WebhookNotifier("soc", url=webhook_receiver.url, secret=WEBHOOK_SECRET)
        opened_notifiers.append(notifier)
        return notifier

    return make


def dispatcher(
    database: TestDatabase, notifiers: Sequence[Notifier], clock: FakeClock, **options: object
) -> Dispatcher:
    options.setdefault("max_wait_s", 0.0)
    return Dispatcher(
        database.sessions,
        {notifier.name: notifier for notifier in notifiers},
        clock=clock,
        sleep=clock.sleep,
        **options,  # type: ignore[arg-type]  # keyword options of the test
    )


async def enqueue_batch(
    database: TestDatabase, alert_batch: AlertBatch, notifier: Notifier, clock: FakeClock
) -> int:
    messages = render_deliveries(alert_batch, notifier.name, notifier)
    return await enqueue(database.sessions, messages, created_at=clock())


async def enqueue_one_batch_per_scan(
    database: TestDatabase, notifier: Notifier, clock: FakeClock, count: int
) -> None:
    """Enqueue `count` single-finding batches of different scans, one second apart."""
    for number in range(count):
        alert_batch = batch([item(number)], scan_id=f"scan-{number}")
        await enqueue_batch(database, alert_batch, notifier, clock)
        clock.advance(1)


def metric(name: str, notifier: str) -> float:
    return REGISTRY.get_sample_value(name, {"notifier": notifier}) or 0.0


async def test_dispatch_sends_pending_deliveries_oldest_first(
    database: TestDatabase,
    slack_server: SlackServer,
    clock: FakeClock,
    slack_notifier: Callable[..., SlackNotifier],
) -> None:
    notifier = slack_notifier()
    await enqueue_one_batch_per_scan(database, notifier, clock, 3)

    report = await dispatcher(database, [notifier], clock).dispatch_pending()

    texts = ["\n".join(slack_texts(m.body)) for m in slack_server.state.accepted]
    assert report.sent == 3
    assert [unique_rule_name(n) in text for n, text in enumerate(texts)] == [True] * 3
    rows = await delivery_rows(database.sessions)
    assert [row.status for row in rows] == ["sent"] * 3
    assert [row.attempts for row in rows] == [1, 1, 1]
    assert all(row.sent_at == clock() for row in rows)


async def test_dispatch_of_hundred_findings_keeps_limits_and_pace(
    database: TestDatabase,
    slack_server: SlackServer,
    clock: FakeClock,
    slack_notifier: Callable[..., SlackNotifier],
) -> None:
    pace_s = 0.25
    notifier = slack_notifier(min_interval_s=pace_s)
    alerts = [item(number, details="Port 22 is open to 0.0.0.0/0. " * 10) for number in range(100)]
    enqueued = await enqueue_batch(database, batch(alerts), notifier, clock)

    report = await dispatcher(database, [notifier], clock).dispatch_pending()

    accepted = slack_server.state.accepted
    assert enqueued > 1
    assert report.sent == enqueued
    assert slack_server.state.rejected == []
    all_text = "\n".join("\n".join(slack_texts(message.body)) for message in accepted)
    assert [all_text.count(alert.rule_name) for alert in alerts] == [1] * 100
    gaps = [later.received_at - earlier.received_at for earlier, later in pairwise(accepted)]
    assert min(gaps) >= pace_s


async def test_overlapping_dispatches_keep_the_pace(
    database: TestDatabase,
    slack_server: SlackServer,
    clock: FakeClock,
    slack_notifier: Callable[..., SlackNotifier],
) -> None:
    pace_s = 0.2
    notifier = slack_notifier(min_interval_s=pace_s)
    await enqueue_one_batch_per_scan(database, notifier, clock, 6)
    sender = dispatcher(database, [notifier], clock)

    reports = await asyncio.gather(sender.dispatch_pending(), sender.dispatch_pending())
    await enqueue_batch(database, batch([item(99)], scan_id="scan-late"), notifier, clock)
    last = await sender.dispatch_pending()

    accepted = slack_server.state.accepted
    gaps = [later.received_at - earlier.received_at for earlier, later in pairwise(accepted)]
    assert sum(report.sent for report in reports) + last.sent == 7
    assert len(accepted) == 7
    assert min(gaps) >= pace_s


async def test_slack_outage_delivers_each_once(
    database: TestDatabase,
    slack_server: SlackServer,
    clock: FakeClock,
    slack_notifier: Callable[..., SlackNotifier],
) -> None:
    notifier = slack_notifier()
    await enqueue_one_batch_per_scan(database, notifier, clock, 5)
    sender = dispatcher(database, [notifier], clock)
    slack_server.state.down = True

    down_reports = []
    for _ in range(4):
        down_reports.append(await sender.dispatch_pending())
        clock.advance(3600)
    slack_server.state.down = False
    final = await sender.dispatch_pending()

    assert [report.retried for report in down_reports] == [1, 1, 1, 1]
    assert final.sent == 5
    assert final.failed == 0
    all_text = "\n".join("\n".join(slack_texts(m.body)) for m in slack_server.state.accepted)
    assert [all_text.count(unique_rule_name(n)) for n in range(5)] == [1] * 5
    rows = await delivery_rows(database.sessions)
    assert [row.attempts for row in rows] == [5, 1, 1, 1, 1]


async def test_webhook_500_retry_keeps_id_and_bytes(
    database: TestDatabase,
    webhook_receiver: WebhookReceiver,
    clock: FakeClock,
    webhook_notifier: Callable[[], WebhookNotifier],
) -> None:
    notifier = webhook_notifier()
    await enqueue_batch(database, batch([item(1)]), notifier, clock)
    webhook_receiver.state.answers.append(ScriptedAnswer(status=500))
    sender = dispatcher(database, [notifier], clock)

    first = await sender.dispatch_pending()
    (row,) = await delivery_rows(database.sessions)
    clock.advance((row.next_attempt_at - clock()).total_seconds())
    second = await sender.dispatch_pending()

    assert (first.retried, second.sent) == (1, 1)
    assert "HTTP 500" in (row.last_error or "")
    attempts = webhook_receiver.state.attempts
    assert [attempt.webhook_id for attempt in attempts] == [row.webhook_id] * 2
    assert attempts[0].body == attempts[1].body == row.payload.encode("utf-8")
    assert webhook_receiver.state.ids == Counter({row.webhook_id: 1})
    assert webhook_receiver.state.rejected_signatures == 0


async def test_dispatch_honours_retry_after_within_one_call(
    database: TestDatabase,
    webhook_receiver: WebhookReceiver,
    clock: FakeClock,
    webhook_notifier: Callable[[], WebhookNotifier],
) -> None:
    notifier = webhook_notifier()
    await enqueue_batch(database, batch([item(1)]), notifier, clock)
    webhook_receiver.state.answers.append(ScriptedAnswer(status=429, retry_after_s=7))

    report = await dispatcher(database, [notifier], clock, max_wait_s=30.0).dispatch_pending()

    assert (report.retried, report.sent) == (1, 1)
    assert clock.slept_s == [7.0]


async def test_dispatch_slack_ratelimited_waits_retry_after(
    database: TestDatabase,
    slack_server: SlackServer,
    clock: FakeClock,
    slack_notifier: Callable[..., SlackNotifier],
) -> None:
    notifier = slack_notifier()
    await enqueue_batch(database, batch([item(1)]), notifier, clock)
    slack_server.state.faults.append(Fault(status=429, error="ratelimited", retry_after_s=45))
    sender = dispatcher(database, [notifier], clock, max_wait_s=30.0)
    started_at = clock()

    first = await sender.dispatch_pending()
    (row,) = await delivery_rows(database.sessions)
    clock.advance(45)
    second = await sender.dispatch_pending()

    assert (first.retried, first.sent, second.sent) == (1, 0, 1)
    assert row.next_attempt_at == started_at + timedelta(seconds=45)
    assert len(slack_server.state.accepted) == 1


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        ("channel_not_found", "check `channel`"),
        ("not_in_channel", "invite the app"),
        ("invalid_auth", "check the bot token"),
    ],
)
async def test_dispatch_permanent_slack_error_fails_at_once(
    database: TestDatabase,
    slack_server: SlackServer,
    clock: FakeClock,
    error: str,
    hint: str,
    slack_notifier: Callable[..., SlackNotifier],
) -> None:
    notifier = slack_notifier()
    await enqueue_batch(database, batch([item(1)]), notifier, clock)
    slack_server.state.faults.append(Fault(error=error))
    failed_before = metric("cspm_watch_deliveries_failed_total", "security")

    report = await dispatcher(database, [notifier], clock).dispatch_pending()

    (row,) = await delivery_rows(database.sessions)
    assert report.failed == 1
    assert row.status == "failed"
    assert row.attempts == 1
    assert error in (row.last_error or "")
    assert hint in (row.last_error or "")
    assert metric("cspm_watch_deliveries_failed_total", "security") == failed_before + 1


async def test_dispatch_archived_slack_webhook_fails_with_reason(
    database: TestDatabase,
    slack_server: SlackServer,
    clock: FakeClock,
    opened_notifiers: list[Notifier],
) -> None:
    notifier = SlackWebhookNotifier("pager", url=slack_server.webhook_url(SLACK_WEBHOOK_PATH))
    opened_notifiers.append(notifier)
    await enqueue_batch(database, batch([item(1)]), notifier, clock)
    slack_server.state.archived_webhook_paths.add(SLACK_WEBHOOK_PATH)

    report = await dispatcher(database, [notifier], clock).dispatch_pending()

    (row,) = await delivery_rows(database.sessions)
    assert report.failed == 1
    assert "channel_is_archived" in (row.last_error or "")
    assert "HTTP 410" in (row.last_error or "")


async def test_dispatch_gives_up_after_max_attempts(
    database: TestDatabase,
    webhook_receiver: WebhookReceiver,
    clock: FakeClock,
    webhook_notifier: Callable[[], WebhookNotifier],
) -> None:
    notifier = webhook_notifier()
    await enqueue_batch(database, batch([item(1)]), notifier, clock)
    webhook_receiver.state.answers.extend([ScriptedAnswer(status=503)] * 3)
    sender = dispatcher(database, [notifier], clock, max_attempts=3)

    reports = []
    for _ in range(4):
        reports.append(await sender.dispatch_pending())
        clock.advance(7200)

    assert [(r.retried, r.failed) for r in reports] == [(1, 0), (1, 0), (0, 1), (0, 0)]
    (row,) = await delivery_rows(database.sessions)
    assert (row.status, row.attempts) == ("failed", 3)
    assert webhook_receiver.state.request_count == 3


async def test_failed_delivery_listed_and_retried(
    database: TestDatabase,
    slack_server: SlackServer,
    clock: FakeClock,
    slack_notifier: Callable[..., SlackNotifier],
) -> None:
    notifier = slack_notifier()
    await enqueue_batch(database, batch([item(1)]), notifier, clock)
    slack_server.state.faults.append(Fault(error="not_in_channel"))
    sender = dispatcher(database, [notifier], clock)
    await sender.dispatch_pending()

    failed = await list_deliveries(database.sessions, status=DeliveryStatus.FAILED)
    result = await retry_deliveries(database.sessions, [failed[0].id, 999], clock=clock)
    report = await sender.dispatch_pending()
    again = await retry_deliveries(database.sessions, [failed[0].id], clock=clock)

    assert [view.notifier for view in failed] == ["security"]
    assert "not_in_channel" in (failed[0].last_error or "")
    assert result.requeued == (failed[0].id,)
    assert result.not_found == (999,)
    assert report.sent == 1
    assert again.requeued == ()
    assert again.not_failed == (failed[0].id,)
    assert len(slack_server.state.accepted) == 1


async def test_too_long_message_split_and_sent(
    database: TestDatabase,
    slack_server: SlackServer,
    clock: FakeClock,
    slack_notifier: Callable[..., SlackNotifier],
) -> None:
    slack_server.state.blocks_text_limit = 3000
    notifier = slack_notifier()
    alerts = [item(number, details="Long detail. " * 40) for number in range(6)]
    enqueued = await enqueue_batch(database, batch(alerts), notifier, clock)

    report = await dispatcher(database, [notifier], clock).dispatch_pending()

    assert enqueued == 1
    assert report.split >= 1
    assert report.failed == 0
    all_text = "\n".join("\n".join(slack_texts(m.body)) for m in slack_server.state.accepted)
    assert [all_text.count(alert.rule_name) for alert in alerts] == [1] * 6
    rows = await delivery_rows(database.sessions)
    assert {row.status for row in rows} == {"sent"}
    assert len({row.dedupe_key for row in rows}) == len(rows)


async def test_unsplittable_message_fails_clearly(
    database: TestDatabase,
    slack_server: SlackServer,
    clock: FakeClock,
    slack_notifier: Callable[..., SlackNotifier],
) -> None:
    slack_server.state.blocks_text_limit = 200
    notifier = slack_notifier()
    await enqueue_batch(database, batch([item(1)]), notifier, clock)

    report = await dispatcher(database, [notifier], clock).dispatch_pending()

    (row,) = await delivery_rows(database.sessions)
    assert report.failed == 1
    assert "msg_blocks_too_long" in (row.last_error or "")
    assert "cannot be split" in (row.last_error or "")


async def test_two_dispatchers_at_once_send_each_delivery_once(
    database: TestDatabase,
    webhook_receiver: WebhookReceiver,
    clock: FakeClock,
    webhook_notifier: Callable[[], WebhookNotifier],
) -> None:
    notifier = webhook_notifier()
    await enqueue_one_batch_per_scan(database, notifier, clock, 20)
    other_notifier = webhook_notifier()

    reports = await asyncio.gather(
        dispatcher(database, [notifier], clock).dispatch_pending(),
        dispatcher(database, [other_notifier], clock).dispatch_pending(),
    )

    assert sum(report.sent for report in reports) == 20
    assert webhook_receiver.state.request_count == 20
    assert set(webhook_receiver.state.ids.values()) == {1}


async def test_dispatch_leaves_deliveries_of_unknown_notifiers_pending(
    database: TestDatabase,
    slack_server: SlackServer,
    clock: FakeClock,
    slack_notifier: Callable[..., SlackNotifier],
) -> None:
    notifier = slack_notifier()
    await enqueue_batch(database, batch([item(1)]), notifier, clock)

    report = await dispatcher(database, [], clock).dispatch_pending()

    (row,) = await delivery_rows(database.sessions)
    assert report.without_notifier == 1
    assert row.status == "pending"


async def test_dispatch_routes_by_min_severity(
    database: TestDatabase,
    slack_server: SlackServer,
    clock: FakeClock,
    slack_notifier: Callable[..., SlackNotifier],
    opened_notifiers: list[Notifier],
) -> None:
    pager = SlackWebhookNotifier(
        "pager",
        url=slack_server.webhook_url(SLACK_WEBHOOK_PATH),
        min_severity=Severity.CRITICAL,
    )
    opened_notifiers.append(pager)
    security = slack_notifier()
    alerts = [item(1, severity=Severity.CRITICAL), item(2, severity=Severity.HIGH)]
    for notifier in (pager, security):
        await enqueue_batch(database, batch(alerts), notifier, clock)

    await dispatcher(database, [pager, security], clock).dispatch_pending()

    by_channel = {
        channel: "\n".join(
            "\n".join(slack_texts(m.body)) for m in slack_server.state.messages_in(channel)
        )
        for channel in ("#pager", SLACK_CHANNEL)
    }
    assert unique_rule_name(1) in by_channel["#pager"]
    assert unique_rule_name(2) not in by_channel["#pager"]
    assert unique_rule_name(1) in by_channel[SLACK_CHANNEL]
    assert unique_rule_name(2) in by_channel[SLACK_CHANNEL]
