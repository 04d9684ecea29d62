"""render_deliveries: filtering by min_severity, stable keys, and every format."""

from __future__ import annotations

import dataclasses
import io
import json

from service.digitalocean.models import Severity
from service.notifiers.console import ConsoleNotifier
from service.notifiers.content import AlertBatch, AlertReason, BatchKind, RuleCount
from service.notifiers.render import filter_batch, render_deliveries
from service.notifiers.slack_webhook import SlackWebhookNotifier
from service.notifiers.webhook import WebhookNotifier
from tests.notifiers.conftest import WEBHOOK_SECRET
from tests.notifiers.factories import (
    CONTROL_CHARACTERS,
    SCAN_CREATED_AT,
    batch,
    item,
    unique_rule_name,
)

PAGER = SlackWebhookNotifier(
    "pager", url="https://hooks.example.invalid/T/B/x", min_severity=Severity.CRITICAL
)
SOC = WebhookNotifier("soc", url="https://soc.example.invalid/hooks", secret=WEBHOOK_SECRET)


def mixed_batch() -> AlertBatch:
    return batch(
        [item(1, severity=Severity.CRITICAL), item(2, severity=Severity.HIGH), item(3)],
    )


def test_render_filters_items_below_min_severity() -> None:
    (message,) = render_deliveries(mixed_batch(), "pager", PAGER)

    assert unique_rule_name(1) in message.payload
    assert unique_rule_name(2) not in message.payload
    assert message.item_count == 1
    assert message.notifier_name == "pager"
    assert message.kind is BatchKind.FINDINGS


def test_render_with_nothing_left_gives_no_message() -> None:
    assert render_deliveries(batch([item(2, severity=Severity.HIGH)]), "pager", PAGER) == []


def test_render_is_stable_across_calls() -> None:
    first = render_deliveries(mixed_batch(), "soc", SOC)
    second = render_deliveries(mixed_batch(), "soc", SOC)

    assert first == second
    assert first[0].webhook_id.startswith("msg_")


def test_render_keys_differ_by_notifier_scan_and_items() -> None:
    keys = {
        render_deliveries(mixed_batch(), "soc", SOC)[0].dedupe_key,
        render_deliveries(mixed_batch(), "soc-2", SOC)[0].dedupe_key,
        render_deliveries(batch([item(1)], scan_id="other-scan"), "soc", SOC)[0].dedupe_key,
        render_deliveries(batch([item(4)]), "soc", SOC)[0].dedupe_key,
    }

    assert len(keys) == 4


def test_render_keys_scanless_batches_by_event_time() -> None:
    failing = batch([], kind=BatchKind.TARGET_FAILING, scan_id=None, failure_reason="401")
    later = dataclasses.replace(failing, scan_created_at=SCAN_CREATED_AT.replace(hour=18))

    first = render_deliveries(failing, "pager", PAGER)
    second = render_deliveries(later, "pager", PAGER)

    assert first[0].dedupe_key != second[0].dedupe_key


def test_target_failing_and_test_batches_ignore_min_severity() -> None:
    for kind in (BatchKind.TARGET_FAILING, BatchKind.TEST):
        messages = render_deliveries(batch([], kind=kind, scan_id=None), "pager", PAGER)

        assert len(messages) == 1


def test_summary_needs_finding_at_min_severity() -> None:
    summary = AlertBatch(
        kind=BatchKind.FIRST_SCAN_SUMMARY,
        target="production",
        scan_id="scan-1",
        scan_created_at=SCAN_CREATED_AT,
        counts_by_severity={Severity.HIGH: 2, Severity.CRITICAL: 1},
        top_rules=(
            RuleCount(rule_uuid="a", rule_name="Crit rule", severity=Severity.CRITICAL, count=1),
            RuleCount(rule_uuid="b", rule_name="High rule", severity=Severity.HIGH, count=2),
        ),
    )
    high_only = dataclasses.replace(summary, counts_by_severity={Severity.HIGH: 2})

    filtered = filter_batch(summary, Severity.CRITICAL)

    assert filtered is not None
    assert [rule.rule_name for rule in filtered.top_rules] == ["Crit rule"]
    assert filter_batch(high_only, Severity.CRITICAL) is None


def test_resolved_items_are_filtered_too() -> None:
    resolved = batch(
        [item(1, reason=AlertReason.RESOLVED), item(2, severity=Severity.CRITICAL)],
        kind=BatchKind.RESOLVED,
    )

    filtered = filter_batch(resolved, Severity.CRITICAL)

    assert filtered is not None
    assert [alert.rule_uuid for alert in filtered.items] == ["rule-002"]


async def test_console_notifier_prints_readable_text_without_control_characters() -> None:
    stream = io.StringIO()
    console = ConsoleNotifier("stdout", stream=stream)
    alert = item(1, name=f"Rule {CONTROL_CHARACTERS}", resource_names=[f"db-{n}" for n in range(7)])
    (message,) = render_deliveries(batch([alert]), "stdout", console)

    await console.send(message.payload, webhook_id=message.webhook_id)

    printed = stream.getvalue()
    assert printed.startswith("[cspm-watch] production: 7 findings need attention\n")
    assert "  - HIGH Rule " in printed
    assert "(new)" in printed
    assert "db-0 (do:droplet:1000)" in printed
    assert "and 2 more" in printed
    assert "mitigation 1: Restrict access" in printed
    assert "\x1b" not in printed
    assert "\u202e" not in printed
    assert json.loads(message.payload)["text"] in printed


def test_batch_json_round_trip_keeps_every_field() -> None:
    original = batch(
        [
            item(1, reason=AlertReason.ESCALATED, previous_severity=Severity.LOW),
            item(2, resource_names=[], resource_count=9),
        ]
    )

    restored = AlertBatch.from_json(original.to_json())

    assert restored == original
