"""The versioned JSON payload of the `webhook` notifier (schema: docs/webhook-payload.schema.json).

Texts are sent as DigitalOcean returned them, unescaped, because only the receiver decides where it
displays them and how to escape them there. A batch whose payload would pass
`MAX_BODY_BYTES` is split into parts, each finding in exactly one part.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from service.notifiers.content import (
    AlertBatch,
    AlertItem,
    counts_to_dict,
    item_to_dict,
    rule_count_to_dict,
)
from service.notifiers.rendered import CONTROL_PANEL_URL, RenderedPart

PAYLOAD_VERSION = 1
EVENT_TYPE_PREFIX = "cspm_watch."

# Parts stay well under the 1 MiB request-body limit that web servers commonly apply by default
# (nginx's client_max_body_size is 1m).
MAX_BODY_BYTES = 200_000
# A finding can have thousands of affected resources. A payload carries the first ones, and
# `resource_count` is the total.
MAX_RESOURCES_PER_FINDING = 500


def render_webhook(batch: AlertBatch, *, rendered_at: datetime | None = None) -> list[RenderedPart]:
    """Render `batch` as one or more webhook payloads, each under MAX_BODY_BYTES."""
    occurred_at = batch.scan_created_at or rendered_at or datetime.now(UTC)
    findings = [_finding(item) for item in batch.items]
    groups = _pack(batch.items, findings)
    parts = []
    for index, group in enumerate(groups, start=1):
        part_findings = [finding for _, finding in group]
        payload = _envelope(batch, occurred_at, part_findings, index=index, count=len(groups))
        items = tuple(item for item, _ in group)
        parts.append(RenderedPart(payload=payload, items=items, index=index, count=len(groups)))
    return parts


def _pack(
    items: Sequence[AlertItem], findings: Sequence[dict[str, Any]]
) -> list[list[tuple[AlertItem, dict[str, Any]]]]:
    """Group findings in order so that each group's JSON stays under MAX_BODY_BYTES.

    The envelope and a margin are estimated at 10 KiB; a single finding larger than the
    remaining room still travels alone.
    """
    room = MAX_BODY_BYTES - 10_000
    groups: list[list[tuple[AlertItem, dict[str, Any]]]] = [[]]
    used = 0
    for item, finding in zip(items, findings, strict=True):
        size = len(_dumps(finding).encode("utf-8")) + 1
        if groups[-1] and used + size > room:
            groups.append([])
            used = 0
        groups[-1].append((item, finding))
        used += size
    return groups


def _envelope(
    batch: AlertBatch,
    occurred_at: datetime,
    findings: list[dict[str, Any]],
    *,
    index: int,
    count: int,
) -> str:
    data: dict[str, Any] = {
        "target": batch.target,
        "scan": _scan(batch),
        "counts_by_severity": counts_to_dict(batch.counts_by_severity),
        "findings": findings,
        "top_rules": [rule_count_to_dict(rule) for rule in batch.top_rules],
        "failure_reason": batch.failure_reason or None,
        "control_panel_url": CONTROL_PANEL_URL,
        "part": {"index": index, "count": count},
    }
    envelope = {
        "version": PAYLOAD_VERSION,
        "type": f"{EVENT_TYPE_PREFIX}{batch.kind.value}",
        "timestamp": occurred_at.astimezone(UTC).isoformat(),
        "data": data,
    }
    return _dumps(envelope)


def _scan(batch: AlertBatch) -> dict[str, Any] | None:
    if batch.scan_id is None:
        return None
    created_at = batch.scan_created_at
    return {
        "id": batch.scan_id,
        "created_at": created_at.astimezone(UTC).isoformat() if created_at else None,
    }


def _finding(item: AlertItem) -> dict[str, Any]:
    finding = item_to_dict(item)
    finding["resource_count"] = item.total_resources
    finding["resources"] = finding["resources"][:MAX_RESOURCES_PER_FINDING]
    finding["resources_truncated"] = len(finding["resources"]) < item.total_resources
    return finding


def _dumps(value: Any) -> str:
    # Compact, key-sorted and UTF-8 (not \u escapes): the stored text is the exact body, so
    # its form only has to be stable, and this one is also the smallest.
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
