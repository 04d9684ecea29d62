"""Alert batches and their items: the content that the cycle passes to the notifiers.

An `AlertBatch` is everything one target's scan has to say to people, before any notifier
filters or renders it. The cycle builds batches from the diff and the alert policy; the
renderers turn each batch into deliveries. Batches round-trip through JSON so that they can be
stored, logged at DEBUG or replayed in tests.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.digitalocean.models import AffectedResource, MitigationStep, Severity


class AlertReason(enum.Enum):
    """Reason an item is in a batch, shown to people and carried in the webhook payload."""

    NEW = "new"
    REOPENED = "reopened"
    ESCALATED = "escalated"
    RESOLVED = "resolved"
    FIRST_SCAN_SUMMARY = "first_scan_summary"
    TARGET_FAILING = "target_failing"
    TEST = "test"


class BatchKind(enum.Enum):
    """The kind of message a batch becomes."""

    FINDINGS = "findings"
    FIRST_SCAN_SUMMARY = "first_scan_summary"
    RESOLVED = "resolved"
    TARGET_FAILING = "target_failing"
    TEST = "test"


# Batches that are not about findings reach every notifier, whatever its min_severity.
SEVERITY_INDEPENDENT_KINDS = frozenset({BatchKind.TARGET_FAILING, BatchKind.TEST})


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertItem:
    """One alerted finding: a rule and the affected resources this alert is about.

    `resources` contains every affected resource of the finding that this alert covers; renderers
    show the first few. `resource_count` is the finding's total as DigitalOcean reports it,
    which is larger than `len(resources)` when resources were not fetched.
    """

    reason: AlertReason
    severity: Severity
    previous_severity: Severity | None = None
    rule_uuid: str
    rule_name: str
    details: str = ""
    mitigation_steps: tuple[MitigationStep, ...] = ()
    resources: tuple[AffectedResource, ...] = ()
    resource_count: int = 0
    first_seen_at: datetime | None = None

    @property
    def total_resources(self) -> int:
        """The number of affected resources, never less than the resources carried."""
        return max(self.resource_count, len(self.resources))

    def identity(self) -> str:
        """Build the string that identifies this item inside a batch, for dedupe keys."""
        urns = ",".join(sorted(resource.urn for resource in self.resources))
        return f"{self.reason.value}|{self.rule_uuid}|{self.severity.value}|{urns}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleCount:
    """A rule and the number of open findings it has, for first-scan summaries."""

    rule_uuid: str
    rule_name: str
    severity: Severity
    count: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertBatch:
    """Everything one target's scan has to say to people, before filtering and rendering.

    `scan_created_at` is when the scan was created. For a batch without a scan
    (`target_failing`, `test`) it is when the event happened, and it then replaces the scan id
    in dedupe keys. `counts_by_severity` counts all open findings of the scan,
    alerted or not.
    """

    kind: BatchKind
    target: str
    scan_id: str | None
    scan_created_at: datetime | None
    counts_by_severity: Mapping[Severity, int] = field(default_factory=dict)
    items: tuple[AlertItem, ...] = ()
    top_rules: tuple[RuleCount, ...] = ()
    failure_reason: str = ""

    def to_json(self) -> str:
        """Serialize the batch as JSON text that `AlertBatch.from_json` reads back."""
        return json.dumps(batch_to_dict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AlertBatch:
        """Parse JSON text written by `to_json`; raise ValueError naming what is invalid."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"invalid alert batch JSON: {error}") from None
        return batch_from_dict(data)


def batch_to_dict(batch: AlertBatch) -> dict[str, Any]:
    """Convert a batch to plain JSON types, with severities and reasons as their values."""
    return {
        "kind": batch.kind.value,
        "target": batch.target,
        "scan_id": batch.scan_id,
        "scan_created_at": _datetime_to_text(batch.scan_created_at),
        "counts_by_severity": {
            severity.value: count for severity, count in batch.counts_by_severity.items()
        },
        "items": [item_to_dict(item) for item in batch.items],
        "top_rules": [rule_count_to_dict(rule) for rule in batch.top_rules],
        "failure_reason": batch.failure_reason,
    }


def counts_to_dict(counts: Mapping[Severity, int]) -> dict[str, int]:
    """Counts for every severity, highest first, with zero for the missing ones."""
    ordered = sorted(Severity, key=lambda severity: severity.rank, reverse=True)
    return {severity.value: int(counts.get(severity, 0)) for severity in ordered}


def item_to_dict(item: AlertItem) -> dict[str, Any]:
    return {
        "reason": item.reason.value,
        "severity": item.severity.value,
        "previous_severity": item.previous_severity.value if item.previous_severity else None,
        "rule_uuid": item.rule_uuid,
        "rule_name": item.rule_name,
        "details": item.details,
        "mitigation_steps": [mitigation_step_to_dict(step) for step in item.mitigation_steps],
        "resources": [resource_to_dict(resource) for resource in item.resources],
        "resource_count": item.resource_count,
        "first_seen_at": _datetime_to_text(item.first_seen_at),
    }


def mitigation_step_to_dict(step: MitigationStep) -> dict[str, Any]:
    return {"step": step.step, "title": step.title, "description": step.description}


def resource_to_dict(resource: AffectedResource) -> dict[str, str]:
    return {"urn": resource.urn, "name": resource.name, "type": resource.type}


def rule_count_to_dict(rule: RuleCount) -> dict[str, Any]:
    return {
        "rule_uuid": rule.rule_uuid,
        "rule_name": rule.rule_name,
        "severity": rule.severity.value,
        "count": rule.count,
    }


def batch_from_dict(data: Any) -> AlertBatch:
    """Build a batch from `batch_to_dict` output; raise ValueError naming what is invalid."""
    if not isinstance(data, dict):
        raise ValueError(f"invalid alert batch: expected a JSON object, got {type(data).__name__}")
    try:
        return AlertBatch(
            kind=BatchKind(data["kind"]),
            target=str(data["target"]),
            scan_id=data.get("scan_id"),
            scan_created_at=_datetime_from_text(data.get("scan_created_at")),
            counts_by_severity={
                Severity.parse(name): int(count)
                for name, count in (data.get("counts_by_severity") or {}).items()
            },
            items=tuple(_item_from_dict(item) for item in data.get("items") or ()),
            top_rules=tuple(_rule_count_from_dict(rule) for rule in data.get("top_rules") or ()),
            failure_reason=str(data.get("failure_reason") or ""),
        )
    except KeyError as error:
        raise ValueError(f"invalid alert batch: missing key {error.args[0]!r}") from None


def _item_from_dict(data: dict[str, Any]) -> AlertItem:
    previous = data.get("previous_severity")
    return AlertItem(
        reason=AlertReason(data["reason"]),
        severity=Severity.parse(data["severity"]),
        previous_severity=Severity.parse(previous) if previous else None,
        rule_uuid=str(data["rule_uuid"]),
        rule_name=str(data["rule_name"]),
        details=str(data.get("details") or ""),
        mitigation_steps=tuple(
            MitigationStep(
                step=step.get("step"),
                title=str(step.get("title") or ""),
                description=str(step.get("description") or ""),
            )
            for step in data.get("mitigation_steps") or ()
        ),
        resources=tuple(
            AffectedResource(urn=str(res["urn"]), name=str(res["name"]), type=str(res["type"]))
            for res in data.get("resources") or ()
        ),
        resource_count=int(data.get("resource_count") or 0),
        first_seen_at=_datetime_from_text(data.get("first_seen_at")),
    )


def _rule_count_from_dict(data: dict[str, Any]) -> RuleCount:
    return RuleCount(
        rule_uuid=str(data["rule_uuid"]),
        rule_name=str(data["rule_name"]),
        severity=Severity.parse(data["severity"]),
        count=int(data["count"]),
    )


def _datetime_to_text(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _datetime_from_text(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError(f"invalid datetime {value!r}: expected a UTC offset")
    return parsed
