"""Plain-text rendering of alert batches for the `console` notifier and `once --dry-run`.

The text carries the same content as the Slack message. Control characters and bidirectional
overrides in texts from DigitalOcean or users are replaced, so that nothing printed can move
the cursor, change colours or reorder a line in a terminal.
"""

from __future__ import annotations

import json

from service.notifiers.content import AlertBatch, AlertItem, BatchKind
from service.notifiers.rendered import (
    CONTROL_PANEL_URL,
    RenderedPart,
    counts_phrase,
    format_datetime,
    headline,
    reason_phrase,
    resource_count_phrase,
)
from service.notifiers.text import fit_plain

MAX_RESOURCES_SHOWN = 5
MAX_MITIGATION_STEPS_SHOWN = 2
MAX_TOP_RULES_SHOWN = 10
_INDENT = "    "


def render_console(batch: AlertBatch, notifier_name: str) -> list[RenderedPart]:
    """Render `batch` as one text message, wrapped in the payload `{"text": ...}`."""
    text = "\n".join(console_lines(batch, notifier_name))
    payload = json.dumps({"text": text}, ensure_ascii=False)
    return [RenderedPart(payload=payload, items=batch.items, index=1, count=1)]


def console_lines(batch: AlertBatch, notifier_name: str) -> list[str]:
    """Build the lines of the text message for `batch`."""
    lines = [f"[cspm-watch] {fit_plain(batch.target, 200)}: {headline(batch, notifier_name)}"]
    if batch.scan_id is not None:
        scan_id = fit_plain(batch.scan_id, 100)
        lines.append(f"  scan {scan_id}, created {format_datetime(batch.scan_created_at)}")
    if batch.kind in (BatchKind.FINDINGS, BatchKind.FIRST_SCAN_SUMMARY, BatchKind.RESOLVED):
        lines.append(f"  open findings: {counts_phrase(batch)}")
    lines.extend(_body_lines(batch))
    lines.append(f"  {CONTROL_PANEL_URL}")
    return lines


def _body_lines(batch: AlertBatch) -> list[str]:
    if batch.kind is BatchKind.FINDINGS:
        return [line for item in batch.items for line in _item_lines(item)]
    if batch.kind is BatchKind.RESOLVED:
        return [
            f"  - {item.severity.value} {fit_plain(item.rule_name, 200)}: "
            f"{resource_count_phrase(item.total_resources)}"
            for item in batch.items
        ]
    if batch.kind is BatchKind.FIRST_SCAN_SUMMARY:
        return _summary_lines(batch)
    if batch.kind is BatchKind.TARGET_FAILING:
        return [f"  reason: {fit_plain(batch.failure_reason or 'no reason recorded', 2000)}"]
    return ["  This is a test message from cspm-watch. No finding is involved."]


def _item_lines(item: AlertItem) -> list[str]:
    lines = [f"  - {item.severity.value} {fit_plain(item.rule_name, 200)} ({reason_phrase(item)})"]
    if item.details.strip():
        lines.append(f"{_INDENT}{fit_plain(item.details, 600)}")
    if item.total_resources:
        lines.append(f"{_INDENT}affected resources: {_resources_text(item)}")
    steps = sorted(item.mitigation_steps, key=lambda step: (step.step is None, step.step or 0))
    for position, step in enumerate(steps[:MAX_MITIGATION_STEPS_SHOWN], start=1):
        title = fit_plain(step.title, 100)
        lines.append(f"{_INDENT}mitigation {position}: {title}: {fit_plain(step.description, 250)}")
    return lines


def _resources_text(item: AlertItem) -> str:
    shown = [
        f"{fit_plain(resource.name or resource.type, 60)} ({fit_plain(resource.urn, 100)})"
        for resource in item.resources[:MAX_RESOURCES_SHOWN]
    ]
    if not shown:
        return f"{item.total_resources}, not fetched"
    remaining = item.total_resources - len(shown)
    if remaining > 0:
        shown.append(f"and {remaining} more")
    return ", ".join(shown)


def _summary_lines(batch: AlertBatch) -> list[str]:
    rules = sorted(batch.top_rules, key=lambda rule: (-rule.severity.rank, -rule.count))
    lines = [
        f"  - {rule.severity.value} {fit_plain(rule.rule_name, 200)}: {rule.count}"
        for rule in rules[:MAX_TOP_RULES_SHOWN]
    ]
    if len(rules) > MAX_TOP_RULES_SHOWN:
        lines.append(f"  and {len(rules) - MAX_TOP_RULES_SHOWN} more rules")
    lines.append("  This scan is the baseline: later scans alert on new, reopened and escalated.")
    return lines
