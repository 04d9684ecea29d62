"""Alert batches for the notifier tests, hostile texts, and checks for Slack payloads."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from service.digitalocean.models import AffectedResource, MitigationStep, Severity
from service.notifiers.content import AlertBatch, AlertItem, AlertReason, BatchKind
from service.notifiers.rendered import CONTROL_PANEL_URL

SCAN_CREATED_AT = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)

MENTIONS = "<!channel> <!here> <!everyone> <@U024BE7LH> <#C024BE7LR> <!subteam^SAZ94GDB8>"
HIDDEN_LINK = "<https://evil.example/steal|Click here to fix> <mailto:a@evil.example|mail>"
ENTITIES = "AT&T &amp; &lt;b&gt; a < b > c &#60;"
PLAIN_MENTIONS = "@channel @here @everyone #general"
EMOJI_AND_SCRIPTS = "🔥💥👨‍👩‍👧‍👦 Ошибка 防火墙 ファイアウォール مرحبا עברית 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"
CONTROL_CHARACTERS = "\x1b[31mred\x1b[0m \u202eevil\u202c \x00 \x07"
HOSTILE_SHORT = " ".join(
    [MENTIONS, HIDDEN_LINK, ENTITIES, PLAIN_MENTIONS, EMOJI_AND_SCRIPTS, CONTROL_CHARACTERS]
)
# Longer than every limit, in the ways that are hardest to cut: words, one endless word,
# characters that grow when escaped, and characters outside the Basic Multilingual Plane.
HOSTILE_LONG = [
    (HOSTILE_SHORT + " ") * 60,
    "x" * 12_000,
    "&" * 5_000,
    "<" * 4_000 + ">" * 4_000,
    "🔥" * 5_000,
    "<@U024BE7LH>" * 1_000,
]

_OWN_LINK = re.compile(rf"<{re.escape(CONTROL_PANEL_URL)}\|[^<>|]*>")
_ENTITY = re.compile(r"&(?!(amp|lt|gt);)")
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def item(
    number: int,
    *,
    severity: Severity = Severity.HIGH,
    reason: AlertReason = AlertReason.NEW,
    name: str | None = None,
    details: str = "A Droplet accepts SSH from any address.",
    resource_names: list[str] | None = None,
    resource_count: int | None = None,
    mitigation: str = "Restrict the firewall rule to known addresses.",
    previous_severity: Severity | None = None,
) -> AlertItem:
    names = resource_names if resource_names is not None else [f"web-{number}-a", f"web-{number}-b"]
    resources = tuple(
        AffectedResource(urn=f"do:droplet:{number}{index:03d}", name=resource, type="Droplet")
        for index, resource in enumerate(names)
    )
    return AlertItem(
        reason=reason,
        severity=severity,
        previous_severity=previous_severity,
        rule_uuid=f"rule-{number:03d}",
        rule_name=name if name is not None else unique_rule_name(number),
        details=details,
        mitigation_steps=(
            MitigationStep(step=2, title="Review", description="Check the rule again."),
            MitigationStep(step=1, title="Restrict access", description=mitigation),
            MitigationStep(step=3, title="Third", description="Never shown."),
        ),
        resources=resources,
        resource_count=resource_count if resource_count is not None else len(resources),
        first_seen_at=SCAN_CREATED_AT,
    )


def unique_rule_name(number: int) -> str:
    """A rule name that no other number's name contains."""
    return f"Rule #{number:03d}#"


def batch(
    items: list[AlertItem] | tuple[AlertItem, ...],
    *,
    kind: BatchKind = BatchKind.FINDINGS,
    target: str = "production",
    scan_id: str | None = "5f8a2c1e-0000-4000-8000-000000000001",
    failure_reason: str = "",
) -> AlertBatch:
    counts: dict[Severity, int] = {}
    for entry in items:
        counts[entry.severity] = counts.get(entry.severity, 0) + 1
    return AlertBatch(
        kind=kind,
        target=target,
        scan_id=scan_id,
        scan_created_at=SCAN_CREATED_AT,
        counts_by_severity=counts,
        items=tuple(items),
        failure_reason=failure_reason,
    )


def slack_texts(body: dict[str, Any]) -> list[str]:
    """Every text string of a Slack payload: the fallback and each one inside the blocks."""
    texts = [body["text"]] if isinstance(body.get("text"), str) else []
    texts.extend(_nested_texts(body.get("blocks", [])))
    return texts


def _nested_texts(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = []
        for key, nested in value.items():
            if key == "text" and isinstance(nested, str):
                found.append(nested)
            else:
                found.extend(_nested_texts(nested))
        return found
    if isinstance(value, list):
        return [text for nested in value for text in _nested_texts(nested)]
    return []


def unsafe_slack_text(text: str) -> str | None:
    """Why `text` is unsafe in mrkdwn, or None: a `<` or `>` other than the service's own
    links, an `&` that starts no entity, or a control or bidirectional character."""
    without_own_links = _OWN_LINK.sub("", text)
    if "<" in without_own_links or ">" in without_own_links:
        return "contains < or > outside the service's own links"
    if _ENTITY.search(text):
        return "contains an & that is not &amp;, &lt; or &gt;"
    if _UNSAFE.search(text):
        return "contains a control or bidirectional character"
    return None


def slack_body(payload: str) -> dict[str, Any]:
    body = json.loads(payload)
    assert isinstance(body, dict)
    return body
