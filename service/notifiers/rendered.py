"""Shared pieces of the renderers: the rendered part and wording used by every format."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from service.digitalocean.models import Severity
from service.notifiers.content import AlertBatch, AlertItem, AlertReason, BatchKind
from service.notifiers.text import fit_plain

# The Security page of the DigitalOcean control panel, where CSPM findings are listed.
# NOTE: DigitalOcean documents the page ("Security in the left navigation") but no URL per
# finding or per scan, so every link points at this page.
CONTROL_PANEL_URL = "https://cloud.digitalocean.com/security"

SEVERITIES_HIGHEST_FIRST = tuple(sorted(Severity, key=lambda severity: severity.rank, reverse=True))


@dataclass(frozen=True, slots=True)
class RenderedPart:
    """One message of a rendered batch and the items it carries (each item in one part)."""

    payload: str
    items: tuple[AlertItem, ...]
    index: int
    count: int


def reason_phrase(item: AlertItem) -> str:
    """Why the item alerts, in a few words."""
    if item.reason is AlertReason.ESCALATED and item.previous_severity is not None:
        return f"escalated from {item.previous_severity.value}"
    phrases = {
        AlertReason.NEW: "new",
        AlertReason.REOPENED: "reopened after it was resolved",
        AlertReason.ESCALATED: "escalated",
        AlertReason.RESOLVED: "resolved",
        AlertReason.FIRST_SCAN_SUMMARY: "open at the first scan",
        AlertReason.TARGET_FAILING: "target failing",
        AlertReason.TEST: "test",
    }
    return phrases[item.reason]


def headline(batch: AlertBatch, notifier_name: str) -> str:
    """Build the one-line title of a batch, without the target name and without escaping.

    Findings are counted per affected resource, as DigitalOcean counts them, so an alert
    about one rule on three Droplets counts three.
    """
    count = sum(max(item.total_resources, 1) for item in batch.items)
    if batch.kind is BatchKind.FINDINGS:
        return f"{count} {_plural(count, 'finding')} need{'s' if count == 1 else ''} attention"
    if batch.kind is BatchKind.RESOLVED:
        return f"{count} {_plural(count, 'finding')} resolved"
    if batch.kind is BatchKind.FIRST_SCAN_SUMMARY:
        total = sum(batch.counts_by_severity.values())
        return f"first scan recorded with {total} open {_plural(total, 'finding')}"
    if batch.kind is BatchKind.TARGET_FAILING:
        return "scans are failing"
    return f"test message for notifier {fit_plain(notifier_name, 40)}"


def counts_phrase(batch: AlertBatch) -> str:
    """Counts of open findings by severity, highest first: `1 CRITICAL, 2 HIGH, 0 MEDIUM`."""
    return ", ".join(
        f"{batch.counts_by_severity.get(severity, 0)} {severity.value}"
        for severity in SEVERITIES_HIGHEST_FIRST
    )


def resource_count_phrase(count: int) -> str:
    return f"{count} {_plural(count, 'resource')}"


def format_datetime(value: datetime | None) -> str:
    """`2026-03-31 12:00 UTC`, or `unknown` for None."""
    if value is None:
        return "unknown"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _plural(count: int, word: str) -> str:
    return word if count == 1 else f"{word}s"
