"""Slack Block Kit messages for alert batches, split to stay inside Slack's limits.

One message carries a header (target and headline), the counts of open findings by severity,
then one group of blocks per alerted finding, and a footer with a link to the DigitalOcean
control panel. A batch that does not fit in one message becomes several, each finding in
exactly one of them. Every text that comes from DigitalOcean or from users is escaped with
`escape_mrkdwn`; the only live links are the service's own.

The payload is the body of `chat.postMessage` or of an incoming webhook without `channel`,
which the `slack` notifier adds when it sends.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from service.digitalocean.models import AffectedResource, Severity
from service.notifiers.content import AlertBatch, AlertItem, BatchKind, RuleCount
from service.notifiers.rendered import (
    CONTROL_PANEL_URL,
    RenderedPart,
    counts_phrase,
    format_datetime,
    headline,
    reason_phrase,
    resource_count_phrase,
)
from service.notifiers.text import fit_mrkdwn, fit_plain, text_length

# Slack documents 50 blocks a message (https://docs.slack.dev/reference/block-kit/blocks),
# 3,000 characters of section text (.../blocks/section-block) and 150 characters of header
# text (.../blocks/header-block). The renderer keeps a margin below each.
MAX_BLOCKS = 40
MAX_SECTION_TEXT = 2800
MAX_HEADER_TEXT = 140
# Slack rejects a message with `msg_blocks_too_long` once the text of all blocks together
# passes a limit that it does not document. Reports put it between about 11,300 and 13,300
# characters (https://github.com/slackapi/bolt-js/issues/2509 and /issues/2867), so messages
# stay under 8,000.
MAX_MESSAGE_TEXT = 8000
# Slack cuts a top-level `text` past 40,000 characters and advises keeping it under 4,000.
MAX_FALLBACK_TEXT = 1500

MAX_RESOURCES_SHOWN = 5
MAX_MITIGATION_STEPS_SHOWN = 2
MAX_TOP_RULES_SHOWN = 10

# Room for each piece of an item's section, after escaping. Together with the labels they stay
# under MAX_SECTION_TEXT; a test renders the longest possible item to check it.
_RULE_NAME_MAX = 200
_DETAILS_MAX = 600
_RESOURCE_NAME_MAX = 60
_RESOURCE_URN_MAX = 100
_STEP_TITLE_MAX = 100
_STEP_DESCRIPTION_MAX = 250
_FAILURE_REASON_MAX = 2000
_RESOLVED_LINE_MAX = 400
_HEADER_TARGET_MAX = 60

_ITEM_BLOCK_ID = re.compile(r"^item-(\d+)")
_PART_SUFFIX_RESERVE = " (999/999)"

SEVERITY_EMOJI = {
    Severity.CRITICAL: ":red_circle:",
    Severity.HIGH: ":large_orange_circle:",
    Severity.MEDIUM: ":large_yellow_circle:",
    Severity.LOW: ":white_circle:",
}


@dataclass(frozen=True, slots=True)
class _Group:
    """Blocks that must travel together in one message, and the items they show."""

    blocks: tuple[dict[str, Any], ...]
    items: tuple[AlertItem, ...]

    @property
    def text_size(self) -> int:
        return blocks_text_length(self.blocks)


def render_slack(batch: AlertBatch, notifier_name: str) -> list[RenderedPart]:
    """Render `batch` as one or more Slack messages that each respect Slack's limits."""
    groups = _groups_for(batch)
    head = _head_blocks(batch, notifier_name, part_suffix=_PART_SUFFIX_RESERVE)
    foot = _foot_blocks(batch, notifier_name)
    fixed_blocks = len(head) + len(foot)
    fixed_size = blocks_text_length([*head, *foot])
    packed = _pack(groups, fixed_blocks=fixed_blocks, fixed_size=fixed_size)

    parts = []
    for index, part_groups in enumerate(packed, start=1):
        suffix = f" ({index}/{len(packed)})" if len(packed) > 1 else ""
        blocks = [
            *_head_blocks(batch, notifier_name, part_suffix=suffix),
            *(block for group in part_groups for block in group.blocks),
            *foot,
        ]
        payload = _payload(_fallback_text(batch, notifier_name, suffix), blocks)
        items = tuple(item for group in part_groups for item in group.items)
        parts.append(RenderedPart(payload=payload, items=items, index=index, count=len(packed)))
    return parts


def split_slack_payload(payload: str) -> list[str] | None:
    """Split a rendered message in two halves of its finding groups, for a message that Slack
    rejected for its size. None when it carries fewer than two groups and cannot be split."""
    body = json.loads(payload)
    blocks: list[dict[str, Any]] = body.get("blocks") or []
    positions = [index for index, block in enumerate(blocks) if _group_number(block) is not None]
    if not positions:
        return None
    head, foot = blocks[: positions[0]], blocks[positions[-1] + 1 :]
    numbers = sorted({_group_number(blocks[index]) or 0 for index in positions})
    if len(numbers) < 2:
        return None

    first_numbers = set(numbers[: len(numbers) // 2])
    halves: tuple[list[dict[str, Any]], list[dict[str, Any]]] = ([], [])
    for index in positions:
        halves[0 if _group_number(blocks[index]) in first_numbers else 1].append(blocks[index])
    return [_payload(body.get("text", ""), [*head, *half, *foot]) for half in halves]


def blocks_text_length(blocks: Iterable[Any]) -> int:
    """Total length of every `text` string in `blocks`, the measure of MAX_MESSAGE_TEXT."""
    total = 0
    for block in blocks:
        total += _text_length_in(block)
    return total


def _text_length_in(value: Any) -> int:
    if isinstance(value, dict):
        own = value.get("text")
        nested = sum(_text_length_in(v) for k, v in value.items() if k != "text")
        if isinstance(own, str):
            return text_length(own) + nested
        return _text_length_in(own) + nested
    if isinstance(value, list | tuple):
        return sum(_text_length_in(v) for v in value)
    return 0


def _group_number(block: dict[str, Any]) -> int | None:
    match = _ITEM_BLOCK_ID.match(str(block.get("block_id", "")))
    return int(match.group(1)) if match else None


def _payload(text: str, blocks: Sequence[dict[str, Any]]) -> str:
    body = {"text": text, "blocks": list(blocks), "unfurl_links": False, "unfurl_media": False}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def _pack(groups: Sequence[_Group], *, fixed_blocks: int, fixed_size: int) -> list[list[_Group]]:
    """Fill messages with whole groups in order until the next group would break a limit."""
    parts: list[list[_Group]] = []
    current: list[_Group] = []
    blocks, size = fixed_blocks, fixed_size
    for group in groups:
        too_many = blocks + len(group.blocks) > MAX_BLOCKS
        too_long = size + group.text_size > MAX_MESSAGE_TEXT
        if current and (too_many or too_long):
            parts.append(current)
            current, blocks, size = [], fixed_blocks, fixed_size
        current.append(group)
        blocks += len(group.blocks)
        size += group.text_size
    parts.append(current)
    return parts


def _groups_for(batch: AlertBatch) -> list[_Group]:
    if batch.kind is BatchKind.FINDINGS:
        return [_item_group(number, item) for number, item in enumerate(batch.items, start=1)]
    if batch.kind is BatchKind.RESOLVED:
        return _resolved_groups(batch.items)
    if batch.kind is BatchKind.FIRST_SCAN_SUMMARY:
        return [_Group(blocks=(_summary_block(batch),), items=batch.items)]
    if batch.kind is BatchKind.TARGET_FAILING:
        text = "*Scans of this target are failing:*\n" + fit_mrkdwn(
            batch.failure_reason or "no reason recorded", _FAILURE_REASON_MAX
        )
        return [_Group(blocks=(_section("failure", text),), items=batch.items)]
    text = (
        "This is a test message from cspm-watch. No finding is involved: if you can read it, "
        "this notifier is configured correctly."
    )
    return [_Group(blocks=(_section("test", text),), items=batch.items)]


def _item_group(number: int, item: AlertItem) -> _Group:
    lines = [
        f"{SEVERITY_EMOJI[item.severity]} *{item.severity.value}* · "
        f"*{fit_mrkdwn(item.rule_name, _RULE_NAME_MAX, one_line=True)}* · {reason_phrase(item)}"
    ]
    if item.details.strip():
        lines.append(fit_mrkdwn(item.details.strip(), _DETAILS_MAX))
    if item.total_resources:
        lines.append(_resources_line(item))
    lines.extend(_mitigation_lines(item))
    lines.append(f"<{CONTROL_PANEL_URL}|Open the Security page in the DigitalOcean control panel>")
    blocks = (_section(f"item-{number}", "\n".join(lines)), _divider(f"item-{number}-end"))
    return _Group(blocks=blocks, items=(item,))


def _resources_line(item: AlertItem) -> str:
    label = f"*Affected resources ({item.total_resources}):*"
    shown = [_resource_text(resource) for resource in item.resources[:MAX_RESOURCES_SHOWN]]
    if not shown:
        return f"{label} not fetched, because the finding is below the resource-detail severity"
    remaining = item.total_resources - len(shown)
    if remaining > 0:
        shown.append(f"and {remaining} more")
    return f"{label} " + ", ".join(shown)


def _resource_text(resource: AffectedResource) -> str:
    name = fit_mrkdwn(
        resource.name or resource.type or "unnamed", _RESOURCE_NAME_MAX, one_line=True
    )
    return f"{name} ({fit_mrkdwn(resource.urn, _RESOURCE_URN_MAX, one_line=True)})"


def _mitigation_lines(item: AlertItem) -> list[str]:
    steps = sorted(item.mitigation_steps, key=lambda step: (step.step is None, step.step or 0))
    if not steps:
        return []
    lines = ["*First mitigation steps:*"]
    for position, step in enumerate(steps[:MAX_MITIGATION_STEPS_SHOWN], start=1):
        title = fit_mrkdwn(step.title, _STEP_TITLE_MAX, one_line=True)
        description = fit_mrkdwn(step.description, _STEP_DESCRIPTION_MAX, one_line=True)
        lines.append(f"{position}. *{title}:* {description}".rstrip())
    return lines


def _resolved_groups(items: Sequence[AlertItem]) -> list[_Group]:
    """Resolved items as bullet lines, packed into sections that each fit MAX_SECTION_TEXT."""
    groups: list[_Group] = []
    lines: list[str] = []
    carried: list[AlertItem] = []
    for item in items:
        line = _resolved_line(item)
        if lines and text_length("\n".join([*lines, line])) > MAX_SECTION_TEXT:
            groups.append(_resolved_group(len(groups) + 1, lines, carried))
            lines, carried = [], []
        lines.append(line)
        carried.append(item)
    if lines:
        groups.append(_resolved_group(len(groups) + 1, lines, carried))
    return groups


def _resolved_group(number: int, lines: list[str], items: list[AlertItem]) -> _Group:
    return _Group(blocks=(_section(f"item-{number}", "\n".join(lines)),), items=tuple(items))


def _resolved_line(item: AlertItem) -> str:
    names = ", ".join(
        fit_mrkdwn(resource.name or resource.urn, _RESOURCE_NAME_MAX, one_line=True)
        for resource in item.resources[:3]
    )
    remaining = item.total_resources - min(len(item.resources), 3)
    if remaining > 0 and names:
        names += f" and {remaining} more"
    line = (
        f"• {SEVERITY_EMOJI[item.severity]} *{item.severity.value}* · "
        f"{fit_mrkdwn(item.rule_name, _RULE_NAME_MAX, one_line=True)} · "
        f"{resource_count_phrase(item.total_resources)}"
    )
    if names:
        line += f": {names}"
    return line if text_length(line) <= _RESOLVED_LINE_MAX else _shorter_resolved_line(item)


def _shorter_resolved_line(item: AlertItem) -> str:
    return (
        f"• {SEVERITY_EMOJI[item.severity]} *{item.severity.value}* · "
        f"{fit_mrkdwn(item.rule_name, 150, one_line=True)} · "
        f"{resource_count_phrase(item.total_resources)}"
    )


def _summary_block(batch: AlertBatch) -> dict[str, Any]:
    lines = ["*Rules with the most open findings:*"]
    rules = sorted(batch.top_rules, key=lambda rule: (-rule.severity.rank, -rule.count))
    lines.extend(_top_rule_line(rule) for rule in rules[:MAX_TOP_RULES_SHOWN])
    if len(rules) > MAX_TOP_RULES_SHOWN:
        lines.append(f"and {len(rules) - MAX_TOP_RULES_SHOWN} more rules")
    if not rules:
        lines = ["No rule has open findings at or above this notifier's severity."]
    lines.append(
        "This scan is the baseline: later scans alert on new, reopened and escalated findings."
    )
    return _section("summary", "\n".join(lines))


def _top_rule_line(rule: RuleCount) -> str:
    name = fit_mrkdwn(rule.rule_name, _RULE_NAME_MAX, one_line=True)
    return f"• {SEVERITY_EMOJI[rule.severity]} *{rule.severity.value}* · {name} · {rule.count}"


def _head_blocks(
    batch: AlertBatch, notifier_name: str, *, part_suffix: str
) -> list[dict[str, Any]]:
    title = f"{fit_plain(batch.target, _HEADER_TARGET_MAX)}: {headline(batch, notifier_name)}"
    header_text = fit_mrkdwn(f"{title}{part_suffix}", MAX_HEADER_TEXT, one_line=True)
    blocks = [
        {
            "type": "header",
            "block_id": "head",
            "text": {"type": "plain_text", "text": header_text, "emoji": True},
        }
    ]
    if batch.kind in (BatchKind.FINDINGS, BatchKind.FIRST_SCAN_SUMMARY, BatchKind.RESOLVED):
        blocks.append(_context("counts", _counts_text(batch)))
    return blocks


def _counts_text(batch: AlertBatch) -> str:
    counts = " · ".join(
        f"{SEVERITY_EMOJI[severity]} {batch.counts_by_severity.get(severity, 0)} {severity.value}"
        for severity in sorted(Severity, key=lambda severity: severity.rank, reverse=True)
    )
    scan = fit_mrkdwn(batch.scan_id or "none", 80, one_line=True)
    return (
        f"*Open findings in this scan:* {counts}\n"
        f"Scan {scan}, created {format_datetime(batch.scan_created_at)}"
    )


def _foot_blocks(batch: AlertBatch, notifier_name: str) -> list[dict[str, Any]]:
    name = fit_mrkdwn(notifier_name, 80, one_line=True)
    text = (
        f"Sent by cspm-watch to notifier {name} · "
        f"<{CONTROL_PANEL_URL}|DigitalOcean control panel: Security>"
    )
    return [_context("foot", text)]


def _fallback_text(batch: AlertBatch, notifier_name: str, part_suffix: str) -> str:
    # No rule names here: the text must stay true for both halves of a split message.
    text = f"{batch.target}: {headline(batch, notifier_name)}{part_suffix}."
    if batch.kind in (BatchKind.FINDINGS, BatchKind.FIRST_SCAN_SUMMARY, BatchKind.RESOLVED):
        text += f" Open findings: {counts_phrase(batch)}."
    return fit_mrkdwn(text, MAX_FALLBACK_TEXT, one_line=True)


def _section(block_id: str, text: str) -> dict[str, Any]:
    # verbatim stops Slack from turning bare channel names and URLs into links; the explicit
    # <url|label> links of the service still work.
    return {
        "type": "section",
        "block_id": block_id,
        "text": {"type": "mrkdwn", "text": text, "verbatim": True},
    }


def _context(block_id: str, text: str) -> dict[str, Any]:
    return {
        "type": "context",
        "block_id": block_id,
        "elements": [{"type": "mrkdwn", "text": text, "verbatim": True}],
    }


def _divider(block_id: str) -> dict[str, Any]:
    return {"type": "divider", "block_id": block_id}
