"""The alert policy: which diff entries people must hear about, and why. No I/O.

The policy returns a decision for every entry it looked at, alerted or not, so the reason can
be logged and stored. Alerted entries are grouped into `AlertBatch`es, one per kind of message,
which the notifiers filter by their own `min_severity` and render.
"""

from __future__ import annotations

import enum
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from service.diffing import Diff, DiffEntry, DiffKind, Fingerprint
from service.digitalocean.models import AffectedResource, Finding, Severity, Suppression
from service.notifiers.content import AlertBatch, AlertItem, AlertReason, BatchKind, RuleCount


class FirstScanMode(enum.Enum):
    """The first-scan mode: what the first completed scan of a target sends."""

    SUMMARY = "summary"
    ALERT = "alert"
    SILENT = "silent"


class SkipReason(enum.Enum):
    """The reason a diff entry raised no alert."""

    UNCHANGED = "unchanged"
    BELOW_THRESHOLD = "below_threshold"
    MUTED = "muted"
    SUPPRESSED = "suppressed"
    FIRST_SCAN = "first_scan"
    RESOLVED_NOT_NOTIFIED = "resolved_not_notified"


_ALERT_REASONS = {
    DiffKind.NEW: AlertReason.NEW,
    DiffKind.REOPENED: AlertReason.REOPENED,
    DiffKind.ESCALATED: AlertReason.ESCALATED,
    DiffKind.RESOLVED: AlertReason.RESOLVED,
}


@dataclass(frozen=True, slots=True)
class Mute:
    """A local mute from the configuration: a rule, a resource or both, until `expires_at`."""

    reason: str
    rule_uuid: str | None = None
    resource_urn: str | None = None
    target: str | None = None
    expires_at: datetime | None = None

    def matches(self, fingerprint: Fingerprint, now: datetime) -> bool:
        if self.expires_at is not None and self.expires_at <= now:
            return False
        if self.target is not None and self.target != fingerprint.target:
            return False
        if self.rule_uuid is not None and self.rule_uuid.lower() != fingerprint.rule_uuid:
            return False
        return self.resource_urn is None or self.resource_urn == fingerprint.resource_urn


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    """A target's alert settings."""

    min_severity: Severity = Severity.HIGH
    on_first_scan: FirstScanMode = FirstScanMode.SUMMARY
    notify_resolved: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's verdict on one diff entry: the alert reason, or why it was skipped."""

    entry: DiffEntry
    reason: AlertReason | None
    skipped: SkipReason | None = None
    mute_reason: str = ""

    @property
    def alerts(self) -> bool:
        return self.reason is not None


@dataclass(frozen=True, slots=True)
class AlertPlan:
    """The outcome of the policy for one scan: the batches, and a decision per diff entry."""

    batches: tuple[AlertBatch, ...]
    decisions: tuple[Decision, ...]

    @property
    def alerted(self) -> list[Decision]:
        return [decision for decision in self.decisions if decision.alerts]


def decide_alerts(
    diff: Diff,
    *,
    policy: AlertPolicy,
    first_scan: bool,
    scan_created_at: datetime | None,
    now: datetime,
    mutes: Sequence[Mute] = (),
    suppressions: Iterable[Suppression] = (),
) -> AlertPlan:
    """Decide which entries of `diff` alert, and group them into batches.

    A diff that changes no state (failed scan, incomplete collection) alerts nothing. The first
    completed scan of a target sends one summary, every alert, or nothing, as
    `policy.on_first_scan` sets.
    """
    if not diff.changes_states:
        return AlertPlan(batches=(), decisions=())

    suppressed = _suppressed_keys(suppressions)
    decisions = tuple(
        _decide(entry, policy, first_scan, now, mutes, suppressed) for entry in diff.entries
    )
    counts = open_counts_by_severity(diff.entries)
    batches: list[AlertBatch] = []
    if first_scan and policy.on_first_scan is FirstScanMode.SUMMARY:
        batches.append(_summary_batch(diff, counts, scan_created_at))

    findings = [d for d in decisions if d.alerts and d.reason is not AlertReason.RESOLVED]
    if findings:
        batches.append(_findings_batch(diff, BatchKind.FINDINGS, findings, counts, scan_created_at))
    resolved = [d for d in decisions if d.reason is AlertReason.RESOLVED]
    if resolved:
        batches.append(_findings_batch(diff, BatchKind.RESOLVED, resolved, counts, scan_created_at))
    return AlertPlan(batches=tuple(batches), decisions=decisions)


def failure_batch(
    target: str, *, consecutive_failures: int, threshold: int, reason: str, now: datetime
) -> AlertBatch | None:
    """Return a `target_failing` batch when the failures in a row reach `threshold` exactly.

    Later failures of the same streak send nothing, so a target that stays broken alerts once.
    A threshold of 0 turns failure alerts off.
    """
    if threshold <= 0 or consecutive_failures != threshold:
        return None
    return AlertBatch(
        kind=BatchKind.TARGET_FAILING,
        target=target,
        scan_id=None,
        scan_created_at=now,
        failure_reason=f"{consecutive_failures} scan cycles in a row failed; last: {reason}",
    )


def open_counts_by_severity(entries: Iterable[DiffEntry]) -> dict[Severity, int]:
    """Count the open findings after the scan by severity, one per affected resource.

    A rule-level entry stands for every resource DigitalOcean counted for its finding.
    """
    counts: Counter[Severity] = Counter()
    for entry in entries:
        if entry.kind is not DiffKind.RESOLVED:
            counts[entry.severity] += _resources_represented(entry)
    return {severity: counts[severity] for severity in Severity}


def _resources_represented(entry: DiffEntry) -> int:
    if not entry.fingerprint.is_rule_level or entry.finding is None:
        return 1
    return max(entry.finding.affected_resources_count or 1, 1)


def _decide(
    entry: DiffEntry,
    policy: AlertPolicy,
    first_scan: bool,
    now: datetime,
    mutes: Sequence[Mute],
    suppressed: set[tuple[str, str]],
) -> Decision:
    reason = _ALERT_REASONS.get(entry.kind)
    if reason is None:
        return Decision(entry, None, SkipReason.UNCHANGED)
    if reason is AlertReason.RESOLVED and not policy.notify_resolved:
        return Decision(entry, None, SkipReason.RESOLVED_NOT_NOTIFIED)
    if first_scan and policy.on_first_scan is not FirstScanMode.ALERT:
        return Decision(entry, None, SkipReason.FIRST_SCAN)
    if entry.severity < policy.min_severity:
        return Decision(entry, None, SkipReason.BELOW_THRESHOLD)
    for mute in mutes:
        if mute.matches(entry.fingerprint, now):
            return Decision(entry, None, SkipReason.MUTED, mute_reason=mute.reason)
    if _is_suppressed(entry.fingerprint, suppressed):
        return Decision(entry, None, SkipReason.SUPPRESSED)
    return Decision(entry, reason)


def _suppressed_keys(suppressions: Iterable[Suppression]) -> set[tuple[str, str]]:
    """(rule UUID, resource id) pairs; DigitalOcean names the resource by id, not by URN."""
    return {
        (suppression.rule_uuid.strip().lower(), suppression.resource_id.strip())
        for suppression in suppressions
    }


def _is_suppressed(fingerprint: Fingerprint, suppressed: set[tuple[str, str]]) -> bool:
    if fingerprint.is_rule_level or not suppressed:
        return False
    # A URN is do:TYPE:ID; the suppression's resource_id is the ID part.
    resource_id = fingerprint.resource_urn.rsplit(":", 1)[-1]
    return (fingerprint.rule_uuid, resource_id) in suppressed or (
        fingerprint.rule_uuid,
        fingerprint.resource_urn,
    ) in suppressed


def _findings_batch(
    diff: Diff,
    kind: BatchKind,
    decisions: Sequence[Decision],
    counts: dict[Severity, int],
    scan_created_at: datetime | None,
) -> AlertBatch:
    return AlertBatch(
        kind=kind,
        target=diff.target,
        scan_id=diff.scan_id,
        scan_created_at=scan_created_at,
        counts_by_severity=counts,
        items=_group_items(decisions),
    )


def _group_items(decisions: Sequence[Decision]) -> tuple[AlertItem, ...]:
    """Group the decisions into one item per (reason, rule, severity), with its resources.

    Items are ordered by severity (highest first), then reason, then rule name, so the most
    urgent findings lead every message.
    """
    groups: dict[tuple[AlertReason, str, Severity], list[DiffEntry]] = defaultdict(list)
    for decision in decisions:
        assert decision.reason is not None
        entry = decision.entry
        groups[(decision.reason, entry.fingerprint.rule_uuid, entry.severity)].append(entry)

    items = [_item_for(reason, entries) for (reason, _, _), entries in groups.items()]
    reason_order = list(AlertReason)
    items.sort(
        key=lambda item: (-item.severity.rank, reason_order.index(item.reason), item.rule_name)
    )
    return tuple(items)


def _item_for(reason: AlertReason, entries: Sequence[DiffEntry]) -> AlertItem:
    first = entries[0]
    finding: Finding | None = next((e.finding for e in entries if e.finding is not None), None)
    resources = tuple(
        sorted(
            (entry.resource for entry in entries if entry.resource is not None),
            key=_resource_sort_key,
        )
    )
    rule_level = all(entry.resource is None for entry in entries)
    reported_count = finding.affected_resources_count if finding is not None else None
    resource_count = (reported_count or 0) if rule_level else len(resources)
    first_seen = [entry.state.first_seen_at for entry in entries if entry.state is not None]
    return AlertItem(
        reason=reason,
        severity=first.severity,
        previous_severity=first.severity_before if reason is AlertReason.ESCALATED else None,
        rule_uuid=first.fingerprint.rule_uuid,
        rule_name=first.rule_name,
        details=finding.details if finding is not None else "",
        mitigation_steps=finding.mitigation_steps if finding is not None else (),
        resources=resources,
        resource_count=resource_count,
        first_seen_at=min(first_seen) if first_seen else None,
    )


def _resource_sort_key(resource: AffectedResource) -> tuple[str, str]:
    return (resource.name.lower(), resource.urn)


def _summary_batch(
    diff: Diff, counts: dict[Severity, int], scan_created_at: datetime | None
) -> AlertBatch:
    per_rule: dict[str, tuple[str, Severity, int]] = {}
    for entry in diff.entries:
        if entry.kind is DiffKind.RESOLVED:
            continue
        rule_uuid = entry.fingerprint.rule_uuid
        name, severity, count = per_rule.get(rule_uuid, (entry.rule_name, entry.severity, 0))
        severity = max(severity, entry.severity)
        per_rule[rule_uuid] = (name, severity, count + _resources_represented(entry))

    ranked = sorted(per_rule.items(), key=lambda item: (-item[1][1].rank, -item[1][2], item[1][0]))
    top_rules = tuple(
        RuleCount(rule_uuid=rule_uuid, rule_name=name, severity=severity, count=count)
        for rule_uuid, (name, severity, count) in ranked
    )
    return AlertBatch(
        kind=BatchKind.FIRST_SCAN_SUMMARY,
        target=diff.target,
        scan_id=diff.scan_id,
        scan_created_at=scan_created_at,
        counts_by_severity=counts,
        top_rules=top_rules,
    )
