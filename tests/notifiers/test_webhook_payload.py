"""The webhook payload: valid against docs/webhook-payload.schema.json, exact texts, split by size,
signed as Standard Webhooks describe."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from standardwebhooks import Webhook

from service.digitalocean.models import Severity
from service.notifiers.content import AlertBatch, AlertReason, BatchKind, RuleCount
from service.notifiers.signing import WebhookSigner, decode_secret
from service.notifiers.webhook_render import (
    MAX_BODY_BYTES,
    MAX_RESOURCES_PER_FINDING,
    render_webhook,
)
from tests.notifiers.conftest import WEBHOOK_SECRET
from tests.notifiers.factories import HOSTILE_SHORT, SCAN_CREATED_AT, batch, item

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "webhook-payload.schema.json"


@pytest.fixture(scope="module")
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def batches_of_every_kind() -> list[AlertBatch]:
    findings = batch(
        [
            item(1, severity=Severity.CRITICAL),
            item(2, reason=AlertReason.ESCALATED, previous_severity=Severity.LOW),
            item(3, reason=AlertReason.REOPENED, resource_names=[], resource_count=4),
        ]
    )
    summary = AlertBatch(
        kind=BatchKind.FIRST_SCAN_SUMMARY,
        target="production",
        scan_id="scan-1",
        scan_created_at=SCAN_CREATED_AT,
        counts_by_severity={Severity.HIGH: 3},
        top_rules=(RuleCount(rule_uuid="r", rule_name="Rule", severity=Severity.HIGH, count=3),),
    )
    resolved = batch([item(4, reason=AlertReason.RESOLVED)], kind=BatchKind.RESOLVED)
    failing = batch([], kind=BatchKind.TARGET_FAILING, scan_id=None, failure_reason="HTTP 401")
    test = batch([], kind=BatchKind.TEST, scan_id=None)
    return [findings, summary, resolved, failing, test]


@pytest.mark.parametrize("alert_batch", batches_of_every_kind(), ids=lambda b: b.kind.value)
def test_payload_of_every_kind_matches_the_schema(
    alert_batch: AlertBatch, validator: Draft202012Validator
) -> None:
    (part,) = render_webhook(alert_batch)

    payload = json.loads(part.payload)

    assert sorted(error.message for error in validator.iter_errors(payload)) == []
    assert payload["type"] == f"cspm_watch.{alert_batch.kind.value}"
    assert payload["version"] == 1


def test_payload_carries_finding_fields_exactly() -> None:
    alert = item(1, reason=AlertReason.ESCALATED, previous_severity=Severity.MEDIUM)

    (part,) = render_webhook(batch([alert]))

    payload = json.loads(part.payload)
    (finding,) = payload["data"]["findings"]
    assert payload["timestamp"] == "2026-03-31T12:00:00+00:00"
    assert payload["data"]["scan"] == {
        "id": "5f8a2c1e-0000-4000-8000-000000000001",
        "created_at": "2026-03-31T12:00:00+00:00",
    }
    assert payload["data"]["counts_by_severity"] == {
        "CRITICAL": 0,
        "HIGH": 1,
        "MEDIUM": 0,
        "LOW": 0,
    }
    assert finding["reason"] == "escalated"
    assert finding["previous_severity"] == "MEDIUM"
    assert finding["rule_uuid"] == "rule-001"
    assert [step["step"] for step in finding["mitigation_steps"]] == [2, 1, 3]
    assert finding["resources"][0] == {
        "urn": "do:droplet:1000",
        "name": "web-1-a",
        "type": "Droplet",
    }
    assert finding["resource_count"] == 2
    assert finding["resources_truncated"] is False


def test_payload_keeps_hostile_text_unescaped() -> None:
    alert = item(1, name=HOSTILE_SHORT, details=HOSTILE_SHORT, resource_names=[HOSTILE_SHORT])

    (part,) = render_webhook(batch([alert], target=HOSTILE_SHORT))

    payload = json.loads(part.payload)
    (finding,) = payload["data"]["findings"]
    assert finding["rule_name"] == HOSTILE_SHORT
    assert finding["details"] == HOSTILE_SHORT
    assert finding["resources"][0]["name"] == HOSTILE_SHORT
    assert payload["data"]["target"] == HOSTILE_SHORT


def test_large_batch_splits_by_size(
    validator: Draft202012Validator,
) -> None:
    many_resources = [f"resource-{n:04d}-{'x' * 40}" for n in range(700)]
    alerts = [item(number, resource_names=many_resources) for number in range(12)]

    parts = render_webhook(batch(alerts))

    assert len(parts) > 1
    rule_uuids: list[str] = []
    for part in parts:
        payload: dict[str, Any] = json.loads(part.payload)
        assert len(part.payload.encode("utf-8")) <= MAX_BODY_BYTES
        assert not list(validator.iter_errors(payload))
        assert payload["data"]["part"] == {"index": part.index, "count": len(parts)}
        for finding in payload["data"]["findings"]:
            assert len(finding["resources"]) == MAX_RESOURCES_PER_FINDING
            assert finding["resources_truncated"] is True
            assert finding["resource_count"] == 700
            rule_uuids.append(finding["rule_uuid"])
    assert rule_uuids == [alert.rule_uuid for alert in alerts]


def test_batch_without_scan_time_uses_rendered_at() -> None:
    rendered_at = datetime(2026, 6, 1, 8, 30, tzinfo=UTC)
    failing = AlertBatch(
        kind=BatchKind.TARGET_FAILING, target="production", scan_id=None, scan_created_at=None
    )

    (part,) = render_webhook(failing, rendered_at=rendered_at)

    assert json.loads(part.payload)["timestamp"] == "2026-06-01T08:30:00+00:00"


def test_signature_verifies_with_standardwebhooks() -> None:
    body = '{"version":1,"text":"Ошибка 🔥"}'.encode()
    headers = WebhookSigner(WEBHOOK_SECRET).headers("msg_1", body, datetime.now(UTC))

    verified = Webhook(WEBHOOK_SECRET).verify(body, headers)

    assert verified == {"version": 1, "text": "Ошибка 🔥"}
    assert headers["webhook-signature"].startswith("v1,")


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "expected the form whsec_<base64>"),
        ("whsec_not*base64", "is not base64"),
        ("whsec_c2hvcnQ=", "at least 24 bytes"),
    ],
)
def test_invalid_signing_secret_is_rejected_without_echo(secret: str, problem: str) -> None:
    with pytest.raises(ValueError, match="invalid webhook secret") as raised:
        decode_secret(secret)

    assert problem in str(raised.value)
    assert secret.removeprefix("whsec_") not in str(raised.value)
