"""`cspm-watch deliveries list|retry`: the outbox of messages to notifiers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.commands.common import open_database
from service.commands.output import OutputFormat, json_time, print_json, print_note, print_table
from service.commands.scans import EXIT_OK
from service.config import Settings
from service.notifiers.dispatcher import (
    Dispatcher,
    DispatchReport,
    RetryResult,
    list_deliveries,
    retry_deliveries,
)
from service.notifiers.factory import build_notifiers
from service.notifiers.outbox import DeliveryView
from service.storage import DeliveryStatus

# `deliveries retry` when a requested id was not failed or not found, or a delivery failed again.
EXIT_NOT_ALL_RETRIED = 1


async def list_outbox(
    settings: Settings,
    *,
    status: DeliveryStatus | None,
    target_name: str | None,
    notifier: str | None,
    limit: int,
    output: OutputFormat,
) -> int:
    """Print the newest deliveries, optionally only those of one status, target or notifier."""
    target = settings.target(target_name).name if target_name is not None else None
    async with open_database(settings) as sessions:
        views = await list_deliveries(
            sessions, status=status, notifier=notifier, target=target, limit=limit
        )
    if output is OutputFormat.JSON:
        print_json([_delivery_json(view) for view in views])
        return EXIT_OK
    print_table(
        ["ID", "Target", "Notifier", "Kind", "Status", "Attempts", "Created At", "Last Error"],
        [
            (
                view.id,
                view.target,
                view.notifier,
                view.kind,
                view.status,
                view.attempts,
                view.created_at,
                view.last_error,
            )
            for view in views
        ],
        title="Deliveries, newest first",
        empty="No delivery matches.",
    )
    return EXIT_OK


async def retry_outbox(
    settings: Settings,
    delivery_ids: Sequence[int] | None,
    *,
    send: bool,
    output: OutputFormat,
) -> int:
    """Queue failed deliveries again (`delivery_ids`, or every failed one when None) and,
    with `send`, dispatch every due delivery now through the configured notifiers.

    Return 1 when a requested id was not failed or does not exist, or when a delivery failed
    again while being dispatched; 0 otherwise.
    """
    async with open_database(settings) as sessions:
        result = await retry_deliveries(sessions, delivery_ids)
        # Every due delivery is sent, also when nothing was queued again: a pending delivery
        # whose next attempt is overdue goes out now rather than at the next `once` or `run`.
        report = await _dispatch_now(settings, sessions) if send else None
    if output is OutputFormat.JSON:
        print_json(_retry_json(result, report))
    else:
        _print_retry(result, report)
    failed_again = report is not None and report.failed > 0
    if result.not_failed or result.not_found or failed_again:
        return EXIT_NOT_ALL_RETRIED
    return EXIT_OK


async def _dispatch_now(
    settings: Settings, sessions: async_sessionmaker[AsyncSession]
) -> DispatchReport:
    notifiers = build_notifiers(settings.notifiers)
    try:
        return await Dispatcher(sessions, notifiers).dispatch_pending()
    finally:
        for notifier in notifiers.values():
            await notifier.aclose()


def _print_retry(result: RetryResult, report: DispatchReport | None) -> None:
    if result.requeued:
        click.echo(f"Queued again: {_id_list(result.requeued)}")
    else:
        click.echo("No failed delivery to queue again.")
    if result.not_failed:
        print_note(f"Not failed, so left alone: {_id_list(result.not_failed)}")
    if result.not_found:
        print_note(f"No delivery has the id: {_id_list(result.not_found)}")
    if report is None:
        return
    click.echo(
        f"Dispatched: {report.sent} sent, {report.retried} to be retried later, "
        f"{report.failed} failed again"
    )
    if report.without_notifier:
        print_note(
            f"{report.without_notifier} deliveries name a notifier that is not configured and "
            "stay queued: add the notifier back to the configuration to send them"
        )


def _retry_json(result: RetryResult, report: DispatchReport | None) -> dict[str, Any]:
    dispatch = None
    if report is not None:
        dispatch = {
            "sent": report.sent,
            "retried": report.retried,
            "failed": report.failed,
            "split": report.split,
            "without_notifier": report.without_notifier,
        }
    return {
        "requeued": list(result.requeued),
        "not_failed": list(result.not_failed),
        "not_found": list(result.not_found),
        "dispatch": dispatch,
    }


def _delivery_json(view: DeliveryView) -> dict[str, Any]:
    return {
        "id": view.id,
        "target": view.target,
        "notifier": view.notifier,
        "kind": view.kind,
        "status": view.status,
        "attempts": view.attempts,
        "created_at": json_time(view.created_at),
        "next_attempt_at": json_time(view.next_attempt_at),
        "sent_at": json_time(view.sent_at),
        "last_error": view.last_error,
        "webhook_id": view.webhook_id,
    }


def _id_list(ids: Sequence[int]) -> str:
    return ", ".join(str(item) for item in ids)
