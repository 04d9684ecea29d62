"""Turn an alert batch into the deliveries of one notifier.

`render_deliveries` filters the batch by the notifier's `min_severity` and renders it in the
notifier's format. Each message gets a dedupe key and a webhook id that depend only on what
the message carries, so rendering the same batch twice gives the same keys.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import datetime

from service.digitalocean.models import Severity
from service.notifiers.base import Notifier, OutboxMessage, PayloadFormat
from service.notifiers.console_render import render_console
from service.notifiers.content import SEVERITY_INDEPENDENT_KINDS, AlertBatch, BatchKind
from service.notifiers.rendered import RenderedPart
from service.notifiers.slack_render import render_slack
from service.notifiers.webhook_render import render_webhook


def render_deliveries(
    batch: AlertBatch,
    notifier_name: str,
    notifier: Notifier,
    *,
    rendered_at: datetime | None = None,
) -> list[OutboxMessage]:
    """Render `batch` for one notifier as messages that each respect the receiver's limits.

    Returns no message when nothing in the batch reaches the notifier's `min_severity`.
    `rendered_at` replaces the event time of a webhook payload whose batch has no
    `scan_created_at`.
    """
    filtered = filter_batch(batch, notifier.min_severity)
    if filtered is None:
        return []
    parts = render_parts(filtered, notifier_name, notifier.payload_format, rendered_at)
    return [_outbox_message(filtered, notifier_name, part) for part in parts]


def render_parts(
    batch: AlertBatch,
    notifier_name: str,
    payload_format: PayloadFormat,
    rendered_at: datetime | None = None,
) -> list[RenderedPart]:
    """Render an already filtered batch in one format."""
    if payload_format is PayloadFormat.SLACK:
        return render_slack(batch, notifier_name)
    if payload_format is PayloadFormat.WEBHOOK:
        return render_webhook(batch, rendered_at=rendered_at)
    return render_console(batch, notifier_name)


def filter_batch(batch: AlertBatch, min_severity: Severity) -> AlertBatch | None:
    """Return the part of `batch` at or above `min_severity`, or None when nothing is left.

    Test and target-failing batches pass whole. A first-scan summary passes when the scan has
    an open finding at or above `min_severity`, with its top rules filtered the same way.
    """
    if batch.kind in SEVERITY_INDEPENDENT_KINDS:
        return batch
    if batch.kind is BatchKind.FIRST_SCAN_SUMMARY:
        relevant = sum(
            count
            for severity, count in batch.counts_by_severity.items()
            if severity >= min_severity
        )
        if relevant == 0:
            return None
        rules = tuple(rule for rule in batch.top_rules if rule.severity >= min_severity)
        items = tuple(item for item in batch.items if item.severity >= min_severity)
        return dataclasses.replace(batch, top_rules=rules, items=items)
    items = tuple(item for item in batch.items if item.severity >= min_severity)
    if not items:
        return None
    return dataclasses.replace(batch, items=items)


def dedupe_key_for(batch: AlertBatch, notifier_name: str, part: RenderedPart) -> str:
    """Build a key that is the same whenever these items of this scan go to this notifier.

    A batch without a scan id is keyed by its `scan_created_at`, the time of the event.
    """
    occasion = batch.scan_id or (batch.scan_created_at.isoformat() if batch.scan_created_at else "")
    material = {
        "target": batch.target,
        "occasion": occasion,
        "notifier": notifier_name,
        "kind": batch.kind.value,
        "items": sorted(item.identity() for item in part.items),
        "part": part.index,
    }
    digest = hashlib.sha256(json.dumps(material, sort_keys=True).encode("utf-8")).hexdigest()
    return f"v1:{digest}"


def webhook_id_for(dedupe_key: str) -> str:
    """Build the Standard Webhooks message id of a delivery: stable, and unique with its key."""
    digest = hashlib.sha256(f"webhook-id:{dedupe_key}".encode()).hexdigest()
    return f"msg_{digest[:32]}"


def _outbox_message(batch: AlertBatch, notifier_name: str, part: RenderedPart) -> OutboxMessage:
    dedupe_key = dedupe_key_for(batch, notifier_name, part)
    return OutboxMessage(
        target=batch.target,
        scan_id=batch.scan_id,
        notifier_name=notifier_name,
        kind=batch.kind,
        dedupe_key=dedupe_key,
        webhook_id=webhook_id_for(dedupe_key),
        payload=part.payload,
        item_count=len(part.items),
    )
