"""Slack messages: layout, escaping of hostile text, and Slack's limits."""

from __future__ import annotations

import json

import pytest

from service.digitalocean.models import Severity
from service.notifiers.content import AlertBatch, AlertReason, BatchKind, RuleCount
from service.notifiers.rendered import CONTROL_PANEL_URL
from service.notifiers.slack_render import (
    MAX_BLOCKS,
    MAX_FALLBACK_TEXT,
    MAX_HEADER_TEXT,
    MAX_MESSAGE_TEXT,
    MAX_SECTION_TEXT,
    blocks_text_length,
    render_slack,
    split_slack_payload,
)
from service.notifiers.text import TRUNCATION_MARKER, text_length
from tests.notifiers.factories import (
    HOSTILE_LONG,
    HOSTILE_SHORT,
    SCAN_CREATED_AT,
    batch,
    item,
    slack_body,
    slack_texts,
    unique_rule_name,
    unsafe_slack_text,
)


def assert_within_limits(body: dict) -> None:
    blocks = body["blocks"]
    assert len(blocks) <= MAX_BLOCKS
    assert blocks_text_length(blocks) <= MAX_MESSAGE_TEXT
    assert text_length(body["text"]) <= MAX_FALLBACK_TEXT
    assert body["text"].strip()
    for block in blocks:
        if block["type"] == "header":
            assert text_length(block["text"]["text"]) <= MAX_HEADER_TEXT
        if block["type"] == "section":
            assert text_length(block["text"]["text"]) <= MAX_SECTION_TEXT
        if block["type"] == "context":
            for element in block["elements"]:
                assert text_length(element["text"]) <= MAX_SECTION_TEXT
    block_ids = [block["block_id"] for block in blocks]
    assert len(block_ids) == len(set(block_ids))


def assert_safe(body: dict) -> None:
    for text in slack_texts(body):
        assert unsafe_slack_text(text) is None, (unsafe_slack_text(text), text[:200])


def test_findings_message_shows_each_part_of_a_finding() -> None:
    alert = item(7, severity=Severity.CRITICAL, resource_names=[f"db-{n}" for n in range(8)])

    (part,) = render_slack(batch([alert]), "security")

    body = slack_body(part.payload)
    text = "\n".join(slack_texts(body))
    assert body["blocks"][0]["type"] == "header"
    assert "production: 8 findings need attention" in body["blocks"][0]["text"]["text"]
    assert "1 CRITICAL" in text
    assert "*CRITICAL*" in text
    assert unique_rule_name(7) in text
    assert "· new" in text
    assert "db-0 (do:droplet:7000)" in text
    assert "and 3 more" in text
    assert "db-5" not in text
    assert "1. *Restrict access:* Restrict the firewall rule" in text
    assert "2. *Review:* Check the rule again." in text
    assert "Never shown" not in text
    assert f"<{CONTROL_PANEL_URL}|" in text
    assert body["unfurl_links"] is False
    assert part.items == (alert,)


@pytest.mark.parametrize(
    ("reason", "previous", "phrase"),
    [
        (AlertReason.NEW, None, "· new"),
        (AlertReason.REOPENED, None, "· reopened after it was resolved"),
        (AlertReason.ESCALATED, Severity.MEDIUM, "· escalated from MEDIUM"),
    ],
)
def test_findings_message_says_why_it_alerts(
    reason: AlertReason, previous: Severity | None, phrase: str
) -> None:
    alert = item(1, reason=reason, previous_severity=previous)

    (part,) = render_slack(batch([alert]), "security")

    assert phrase in "\n".join(slack_texts(slack_body(part.payload)))


def test_findings_message_with_unfetched_resources_says_so() -> None:
    alert = item(1, resource_names=[], resource_count=12)

    (part,) = render_slack(batch([alert]), "security")

    assert "*Affected resources (12):* not fetched" in part.payload


def test_hostile_short_texts_are_escaped_everywhere() -> None:
    alert = item(
        1,
        name=HOSTILE_SHORT,
        details=HOSTILE_SHORT,
        resource_names=[HOSTILE_SHORT, HOSTILE_SHORT],
        mitigation=HOSTILE_SHORT,
    )
    hostile_batch = batch([alert], target=f"prod {HOSTILE_SHORT}", scan_id=HOSTILE_SHORT)

    parts = render_slack(hostile_batch, f"notifier {HOSTILE_SHORT}")

    for part in parts:
        body = slack_body(part.payload)
        assert_safe(body)
        assert_within_limits(body)
    text = "\n".join(slack_texts(slack_body(parts[0].payload)))
    assert "&lt;!channel&gt;" in text
    assert "AT&amp;T" in text
    assert "🔥💥" in text
    assert "防火墙" in text


@pytest.mark.parametrize("hostile", HOSTILE_LONG, ids=lambda text: repr(text[:12]))
def test_hostile_long_texts_stay_within_limits(hostile: str) -> None:
    alert = item(
        1,
        name=hostile,
        details=hostile,
        resource_names=[hostile] * 7,
        mitigation=hostile,
    )
    long_batch = batch([alert, item(2, name=hostile)], target=hostile, scan_id=hostile)

    parts = render_slack(long_batch, hostile)

    for part in parts:
        body = slack_body(part.payload)
        assert_safe(body)
        assert_within_limits(body)
    assert TRUNCATION_MARKER in parts[0].payload


def test_long_details_are_cut_at_a_word_boundary() -> None:
    details = " ".join(f"word{n:04d}" for n in range(400))

    (part,) = render_slack(batch([item(1, details=details)]), "security")

    section = slack_body(part.payload)["blocks"][2]["text"]["text"]
    cut_line = next(line for line in section.split("\n") if line.startswith("word0000"))
    assert cut_line.endswith(TRUNCATION_MARKER)
    kept_words = cut_line.removesuffix(TRUNCATION_MARKER).split(" ")
    assert kept_words == [f"word{n:04d}" for n in range(len(kept_words))]


def test_hundred_findings_each_in_one_message() -> None:
    alerts = [item(number, details="detail " * 80) for number in range(100)]

    parts = render_slack(batch(alerts), "security")

    assert len(parts) > 1
    carried = [alert for part in parts for alert in part.items]
    assert carried == alerts
    for part in parts:
        body = slack_body(part.payload)
        assert_within_limits(body)
        text = "\n".join(slack_texts(body))
        for alert in part.items:
            assert text.count(alert.rule_name) == 1
        assert f"({part.index}/{len(parts)})" in body["blocks"][0]["text"]["text"]


def test_many_findings_respect_block_limit() -> None:
    alerts = [item(number, details="", resource_names=[]) for number in range(60)]

    parts = render_slack(batch(alerts), "security")

    block_counts = [len(slack_body(part.payload)["blocks"]) for part in parts]
    assert max(block_counts) <= MAX_BLOCKS
    assert sum(len(part.items) for part in parts) == 60


def test_split_payload_halves_findings() -> None:
    alerts = [item(number) for number in range(4)]
    (part,) = render_slack(batch(alerts), "security")

    halves = split_slack_payload(part.payload)

    assert halves is not None
    bodies = [json.loads(half) for half in halves]
    texts = ["\n".join(slack_texts(body)) for body in bodies]
    assert [name in texts[0] for name in map(unique_rule_name, range(4))] == [
        True,
        True,
        False,
        False,
    ]
    assert [name in texts[1] for name in map(unique_rule_name, range(4))] == [
        False,
        False,
        True,
        True,
    ]
    for body in bodies:
        assert body["blocks"][0]["block_id"] == "head"
        assert body["blocks"][-1]["block_id"] == "foot"


def test_split_payload_of_one_finding_is_none() -> None:
    (part,) = render_slack(batch([item(1)]), "security")

    assert split_slack_payload(part.payload) is None


def test_first_scan_summary_lists_top_rules() -> None:
    rules = tuple(
        RuleCount(rule_uuid=f"r{n}", rule_name=f"Top rule {n}", severity=Severity.HIGH, count=n)
        for n in range(15)
    )
    summary = AlertBatch(
        kind=BatchKind.FIRST_SCAN_SUMMARY,
        target="production",
        scan_id="scan-1",
        scan_created_at=SCAN_CREATED_AT,
        counts_by_severity={Severity.HIGH: 40, Severity.LOW: 3},
        top_rules=rules,
    )

    parts = render_slack(summary, "security")

    assert len(parts) == 1
    text = "\n".join(slack_texts(slack_body(parts[0].payload)))
    assert "first scan recorded with 43 open findings" in text
    assert "Top rule 14 · 14" in text
    assert "Top rule 4 ·" not in text
    assert "and 5 more rules" in text
    assert "baseline" in text


def test_resolved_findings_come_as_one_grouped_message() -> None:
    alerts = [item(number, reason=AlertReason.RESOLVED) for number in range(30)]

    parts = render_slack(batch(alerts, kind=BatchKind.RESOLVED), "security")

    assert len(parts) == 1
    text = "\n".join(slack_texts(slack_body(parts[0].payload)))
    assert "60 findings resolved" in text
    assert all(unique_rule_name(number) in text for number in range(30))


def test_target_failing_message_escapes_the_reason() -> None:
    failing = batch([], kind=BatchKind.TARGET_FAILING, scan_id=None, failure_reason=HOSTILE_SHORT)

    (part,) = render_slack(failing, "security")

    body = slack_body(part.payload)
    assert_safe(body)
    assert "scans are failing" in body["blocks"][0]["text"]["text"]


def test_test_message_is_clearly_labelled() -> None:
    (part,) = render_slack(batch([], kind=BatchKind.TEST, scan_id=None), "security")

    body = slack_body(part.payload)
    assert "test message for notifier security" in body["blocks"][0]["text"]["text"]
    assert "This is a test message" in part.payload
