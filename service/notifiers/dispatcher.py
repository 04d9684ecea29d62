"""The dispatcher: sends pending deliveries from the outbox, oldest first, at each channel's pace.

Notifiers that post to the same place (the same `channel_key`) form one channel. Channels are
drained concurrently; inside a channel, deliveries go one at a time, at least
`min_interval_s` apart. Each delivery is claimed before it is sent and recorded after, each
in its own short transaction, so a crash between sending and recording sends the message at
most once more and loses nothing.

A retryable failure schedules the delivery again with backoff and holds the channel's other
pending deliveries until then, so a receiver that is down sees one probe instead of every
message; the held deliveries do not use up attempts. After `max_attempts` and `retry_window_s`
since the delivery was enqueued, or at once on a final error, the delivery is failed and stays
in the table.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.errors import NotifierError
from service.notifiers import metrics, outbox
from service.notifiers.base import Notifier, PayloadFormat
from service.notifiers.outbox import ClaimedDelivery, DeliveryView
from service.notifiers.render import webhook_id_for
from service.notifiers.retry import MessageTooLongError, backoff_delay_s
from service.notifiers.slack_render import split_slack_payload
from service.storage.deliveries import DeliveryStatus

logger = structlog.get_logger(__name__)

DEFAULT_MAX_ATTEMPTS = 8
# With these, eight attempts span between about one and two hours.
DEFAULT_BASE_DELAY_S = 60.0
DEFAULT_MAX_DELAY_S = 3600.0
# The service keeps retrying a receiver that answers "try again later" for at least a day,
# so an outage across several cycles of the default six-hour schedule loses no alert.
SERVICE_RETRY_WINDOW_S = 24 * 3600.0
# A claim lasts far longer than the longest send (the Slack client's 30 s timeout). A row
# claimed by a process that died is sent again once its claim has expired.
DEFAULT_CLAIM_TIMEOUT_S = 300.0
# dispatch_pending waits inside one call for a delivery that becomes due this soon (a short
# Retry-After), instead of leaving it to the next call.
DEFAULT_MAX_WAIT_S = 30.0

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class DispatchReport:
    """Outcome counts of one `dispatch_pending` call."""

    sent: int = 0
    retried: int = 0
    failed: int = 0
    split: int = 0
    claims_lost: int = 0
    without_notifier: int = 0

    def add(self, other: DispatchReport) -> None:
        self.sent += other.sent
        self.retried += other.retried
        self.failed += other.failed
        self.split += other.split
        self.claims_lost += other.claims_lost


@dataclass(frozen=True)
class _Channel:
    key: str
    notifier_names: tuple[str, ...]
    min_interval_s: float


class Dispatcher:
    """Sends the outbox's due deliveries through the configured notifiers.

    A delivery that keeps meeting retryable errors is failed after `max_attempts`, but not
    before it is `retry_window_s` old (counted from when it was enqueued).
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        notifiers: Mapping[str, Notifier],
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        retry_window_s: float = 0.0,
        base_delay_s: float = DEFAULT_BASE_DELAY_S,
        max_delay_s: float = DEFAULT_MAX_DELAY_S,
        claim_timeout_s: float = DEFAULT_CLAIM_TIMEOUT_S,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        clock: Clock = utc_now,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ):
        if max_attempts < 1:
            raise ValueError(f"invalid max_attempts {max_attempts}: expected 1 or more")
        self._sessions = session_factory
        self._notifiers = dict(notifiers)
        self._max_attempts = max_attempts
        self._retry_window = timedelta(seconds=retry_window_s)
        self._base_delay_s = base_delay_s
        self._max_delay_s = max_delay_s
        self._claim_timeout_s = claim_timeout_s
        self._max_wait_s = max_wait_s
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._channels = _channels_of(self._notifiers)
        # Per channel: when the last message left (monotonic seconds), and a lock, so that
        # overlapping dispatch_pending calls (the dispatch job and a cycle's own dispatch)
        # drain a channel one at a time and keep its pace between calls.
        self._last_sent_at: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._locks_loop: asyncio.AbstractEventLoop | None = None

    async def dispatch_pending(self) -> DispatchReport:
        """Send every delivery that is due now, channel by channel, and report what happened."""
        report = DispatchReport()
        async with self._sessions() as session:
            report.without_notifier = await outbox.count_waiting_without_notifier(
                session, list(self._notifiers)
            )
        if report.without_notifier:
            logger.warning(
                "deliveries_without_notifier",
                count=report.without_notifier,
                configured=sorted(self._notifiers),
            )
        channel_reports = await asyncio.gather(
            *(self._drain(channel) for channel in self._channels)
        )
        for channel_report in channel_reports:
            report.add(channel_report)
        return report

    async def _drain(self, channel: _Channel) -> DispatchReport:
        """Send the channel's due deliveries one at a time until none is due soon."""
        report = DispatchReport()
        async with self._lock_for(channel):
            while True:
                claim = await self._claim(channel)
                if claim is None:
                    if not await self._wait_for_next_due(channel):
                        return report
                    continue
                await self._keep_pace(channel, self._last_sent_at.get(channel.key))
                await self._attempt_to_the_end(channel, claim, report)
                self._last_sent_at[channel.key] = time.monotonic()

    def _lock_for(self, channel: _Channel) -> asyncio.Lock:
        # A lock belongs to one event loop, and the CLI may run several loops in turn.
        loop = asyncio.get_running_loop()
        if self._locks_loop is not loop:
            self._locks, self._locks_loop = {}, loop
        return self._locks.setdefault(channel.key, asyncio.Lock())

    async def _claim(self, channel: _Channel) -> ClaimedDelivery | None:
        async with self._sessions.begin() as session:
            return await outbox.claim_next(
                session,
                channel.notifier_names,
                now=self._clock(),
                claim_timeout_s=self._claim_timeout_s,
            )

    async def _wait_for_next_due(self, channel: _Channel) -> bool:
        """Sleep until the channel's next delivery is due if that is within max_wait_s;
        False when nothing is due that soon."""
        async with self._sessions() as session:
            due_at = await outbox.next_due_at(session, channel.notifier_names)
        if due_at is None:
            return False
        wait_s = (due_at - self._clock()).total_seconds()
        if wait_s > self._max_wait_s:
            return False
        # A short floor keeps a row that another process holds locked from spinning this loop.
        await self._sleep(max(wait_s, 0.05))
        return True

    async def _keep_pace(self, channel: _Channel, last_sent_at: float | None) -> None:
        # Pacing is real time on the monotonic clock, whatever clock and sleep were injected,
        # because it protects the receiver and not the schedule in the database.
        if last_sent_at is None or channel.min_interval_s <= 0:
            return
        remaining_s = channel.min_interval_s - (time.monotonic() - last_sent_at)
        if remaining_s > 0:
            await asyncio.sleep(remaining_s)

    async def _attempt_to_the_end(
        self, channel: _Channel, claim: ClaimedDelivery, report: DispatchReport
    ) -> None:
        """Send and record one delivery, finishing both even if the dispatch is cancelled.

        A shutdown signal cancels the dispatch, and cancelling a send half-way would leave
        the receiver unsure whether the message arrived. The notifier's own timeout bounds
        how long the shutdown waits here.
        """
        attempt = asyncio.ensure_future(self._attempt(channel, claim, report))
        try:
            await asyncio.shield(attempt)
        except asyncio.CancelledError:
            await attempt
            raise

    async def _attempt(
        self, channel: _Channel, claim: ClaimedDelivery, report: DispatchReport
    ) -> None:
        notifier = self._notifiers[claim.notifier]
        try:
            await notifier.send(claim.payload, webhook_id=claim.webhook_id)
        except MessageTooLongError as error:
            await self._split(notifier, claim, str(error), report)
        except NotifierError as error:
            await self._record_failure(channel, claim, error, report)
        except Exception as error:
            # A notifier classifies every failure it recognizes. Anything else is a bug or an
            # unforeseen response, retried within the attempt budget.
            logger.exception("delivery_send_crashed", delivery_id=claim.id, notifier=claim.notifier)
            unexpected = NotifierError(
                f"notifier {claim.notifier} failed unexpectedly ({type(error).__name__})",
                retryable=True,
            )
            await self._record_failure(channel, claim, unexpected, report)
        else:
            await self._record_sent(claim, report)

    async def _record_sent(self, claim: ClaimedDelivery, report: DispatchReport) -> None:
        async with self._sessions.begin() as session:
            recorded = await outbox.record_sent(session, claim, now=self._clock())
        if not recorded:
            report.claims_lost += 1
            logger.warning("delivery_claim_lost", delivery_id=claim.id, notifier=claim.notifier)
            return
        report.sent += 1
        metrics.DELIVERIES_SENT.labels(notifier=claim.notifier).inc()
        logger.info(
            "delivery_sent",
            delivery_id=claim.id,
            notifier=claim.notifier,
            webhook_id=claim.webhook_id,
            attempts=claim.attempts,
        )

    async def _record_failure(
        self,
        channel: _Channel,
        claim: ClaimedDelivery,
        error: NotifierError,
        report: DispatchReport,
    ) -> None:
        reason = str(error)
        if not error.retryable or self._retries_used_up(claim):
            await self._give_up(claim, reason, report)
            return
        delay_s = backoff_delay_s(
            claim.attempts,
            base_delay_s=self._base_delay_s,
            max_delay_s=self._max_delay_s,
            retry_after_s=error.retry_after_s,
            rng=self._rng,
        )
        next_attempt_at = self._clock() + timedelta(seconds=delay_s)
        async with self._sessions.begin() as session:
            recorded = await outbox.record_retry(
                session,
                claim,
                reason=reason,
                next_attempt_at=next_attempt_at,
                channel_notifiers=channel.notifier_names,
            )
        if not recorded:
            report.claims_lost += 1
            return
        report.retried += 1
        metrics.DELIVERY_RETRIES.labels(notifier=claim.notifier).inc()
        # A retry is logged at WARNING when its error differs from the previous attempt's.
        log = logger.warning if reason != claim.last_error else logger.debug
        log(
            "delivery_retry_scheduled",
            delivery_id=claim.id,
            notifier=claim.notifier,
            attempts=claim.attempts,
            max_attempts=self._max_attempts,
            delay_s=round(delay_s, 1),
            error=reason,
        )

    def _retries_used_up(self, claim: ClaimedDelivery) -> bool:
        if claim.attempts < self._max_attempts:
            return False
        if claim.created_at is None:
            return True
        return self._clock() - claim.created_at >= self._retry_window

    async def _give_up(self, claim: ClaimedDelivery, reason: str, report: DispatchReport) -> None:
        async with self._sessions.begin() as session:
            recorded = await outbox.record_failed(session, claim, reason=reason)
        if not recorded:
            report.claims_lost += 1
            return
        report.failed += 1
        metrics.DELIVERIES_FAILED.labels(notifier=claim.notifier).inc()
        logger.error(
            "delivery_failed",
            delivery_id=claim.id,
            notifier=claim.notifier,
            attempts=claim.attempts,
            error=reason,
        )

    async def _split(
        self, notifier: Notifier, claim: ClaimedDelivery, reason: str, report: DispatchReport
    ) -> None:
        halves = split_payload(notifier.payload_format, claim.payload)
        if halves is None:
            reason = f"{reason}; it carries one finding and cannot be split"
            await self._give_up(claim, reason, report)
            return
        async with self._sessions.begin() as session:
            dedupe_key = await outbox.dedupe_key_of(session, claim.id) or str(claim.id)
            # Keyed by content: the first half keeps the original key and may be split again.
            digest = hashlib.sha256(halves[1].encode("utf-8")).hexdigest()[:16]
            second_key = f"{dedupe_key}/{digest}"
            recorded = await outbox.record_split(
                session,
                claim,
                payloads=(halves[0], halves[1]),
                second_dedupe_key=second_key,
                second_webhook_id=webhook_id_for(second_key),
                now=self._clock(),
            )
        if not recorded:
            report.claims_lost += 1
            return
        report.split += 1
        metrics.DELIVERIES_SPLIT.labels(notifier=claim.notifier).inc()
        logger.info("delivery_split", delivery_id=claim.id, notifier=claim.notifier)


def split_payload(payload_format: PayloadFormat, payload: str) -> list[str] | None:
    """Two halves of a payload that a receiver rejected as too long, or None if it cannot
    be split. Only Slack messages have a size limit that rendering does not already keep."""
    if payload_format is not PayloadFormat.SLACK:
        return None
    halves = split_slack_payload(payload)
    if halves is None or len(halves) != 2:
        return None
    return halves


def _channels_of(notifiers: Mapping[str, Notifier]) -> list[_Channel]:
    grouped: dict[str, list[Notifier]] = {}
    for notifier in notifiers.values():
        grouped.setdefault(notifier.channel_key, []).append(notifier)
    return [
        _Channel(
            key=key,
            notifier_names=tuple(sorted(member.name for member in members)),
            min_interval_s=max(member.min_interval_s for member in members),
        )
        for key, members in grouped.items()
    ]


async def list_deliveries(
    session_factory: async_sessionmaker[AsyncSession],
    *,
    status: DeliveryStatus | None = None,
    notifier: str | None = None,
    target: str | None = None,
    limit: int = 50,
) -> list[DeliveryView]:
    """Deliveries for `cspm-watch deliveries list`, newest first."""
    async with session_factory() as session:
        return await outbox.list_delivery_views(
            session, status=status, notifier=notifier, target=target, limit=limit
        )


@dataclass(frozen=True)
class RetryResult:
    """Outcome of `retry_deliveries`: ids moved back to pending, and requested ids left alone."""

    requeued: tuple[int, ...]
    not_failed: tuple[int, ...]
    not_found: tuple[int, ...]


async def retry_deliveries(
    session_factory: async_sessionmaker[AsyncSession],
    delivery_ids: Sequence[int] | None = None,
    *,
    clock: Clock = utc_now,
) -> RetryResult:
    """Queue failed deliveries again with a fresh attempt budget, for `deliveries retry`.

    `delivery_ids=None` retries every failed delivery. Requested ids that are not failed
    (pending, sending or sent) or do not exist are reported and left alone: a sent message is
    never sent again by this function.
    """
    async with session_factory.begin() as session:
        requeued = await outbox.requeue_failed(session, delivery_ids, now=clock())
        statuses = await outbox.statuses_of(session, delivery_ids) if delivery_ids else {}
    requested_ids = sorted(set(delivery_ids or ()))
    result = RetryResult(
        requeued=tuple(requeued),
        not_failed=tuple(i for i in requested_ids if i in statuses and i not in requeued),
        not_found=tuple(i for i in requested_ids if i not in statuses),
    )
    logger.info("deliveries_requeued", delivery_ids=list(result.requeued))
    return result
