"""The diff of one collected scan against a target's finding states, with no I/O.

A fingerprint is (target, rule UUID, resource URN). The URN is "" when the scan did not fetch
the finding's affected resources, which makes the fingerprint rule-level. Texts are not part
of a fingerprint, so a reworded finding of the same rule and resource keeps its identity.

Only a COMPLETED scan whose collection is complete changes finding states. For any other
scan `compute_diff` returns a diff with no entries and the reason in `outcome`.

Rule-level and resource-level fingerprints of the same rule meet in two ways:

- The rule has an open rule-level state and this scan fetched its resources. The new
  resource-level fingerprints are adopted: they inherit the rule-level state's first sighting
  and reopen count, their entries are UNCHANGED (ESCALATED if the severity rose), and the
  rule-level state becomes superseded. Nothing is reported RESOLVED for it.
- The rule has open resource-level states and this scan did not fetch its resources. Those
  states stay open, each with an UNCHANGED (or ESCALATED) entry, and no rule-level
  fingerprint is created.

A fetched but empty list of resources counts as "not fetched", so such a finding is not lost.
A severity drop is UNCHANGED; applying the diff stores the lower severity.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import NamedTuple

from service.digitalocean.models import AffectedResource, Finding, ScanStatus, Severity

RULE_LEVEL_URN = ""


class DiffKind(enum.Enum):
    """Kind of change that a scan made to one fingerprint."""

    NEW = "new"
    REOPENED = "reopened"
    ESCALATED = "escalated"
    RESOLVED = "resolved"
    UNCHANGED = "unchanged"


class DiffOutcome(enum.Enum):
    """Whether a diff changes the finding states, and if not, why."""

    APPLIED = "applied"
    SCAN_NOT_COMPLETED = "scan_not_completed"
    COLLECTION_INCOMPLETE = "collection_incomplete"


class StateStatus(enum.Enum):
    """Status of a finding state. SUPERSEDED: a rule-level state replaced by resource-level ones."""

    OPEN = "open"
    RESOLVED = "resolved"
    SUPERSEDED = "superseded"


class Fingerprint(NamedTuple):
    """The identity of one finding on one resource across scans."""

    target: str
    rule_uuid: str
    resource_urn: str

    @property
    def is_rule_level(self) -> bool:
        return self.resource_urn == RULE_LEVEL_URN


def fingerprint_of(target: str, rule_uuid: str, resource_urn: str = RULE_LEVEL_URN) -> Fingerprint:
    """Build a fingerprint with the rule UUID in lower case and surrounding blanks removed.

    UUIDs compare case-insensitively; URNs are kept in their case because resource names inside
    them (a Spaces bucket, for example) are case-sensitive.
    """
    return Fingerprint(target, rule_uuid.strip().lower(), resource_urn.strip())


@dataclass(frozen=True, slots=True)
class FindingState:
    """A stored finding state as the diff needs it. `state_id` is the row id, if stored."""

    fingerprint: Fingerprint
    status: StateStatus
    severity: Severity
    first_seen_at: datetime
    last_seen_at: datetime
    times_reopened: int = 0
    rule_name: str = ""
    resource_name: str = ""
    resource_type: str = ""
    previous_severity: Severity | None = None
    resolved_at: datetime | None = None
    last_alerted_at: datetime | None = None
    first_seen_scan_row_id: int | None = None
    state_id: int | None = None

    @property
    def resource(self) -> AffectedResource | None:
        """The last seen resource, or None for a rule-level state."""
        if self.fingerprint.is_rule_level:
            return None
        return AffectedResource(
            urn=self.fingerprint.resource_urn, name=self.resource_name, type=self.resource_type
        )


@dataclass(frozen=True, slots=True)
class CollectedFinding:
    """A finding and its affected resources; `resources` is None when they were not fetched."""

    finding: Finding
    resources: Sequence[AffectedResource] | None = None


@dataclass(frozen=True, slots=True)
class CollectedScan:
    """The findings and resources one cycle collected of one scan.

    `complete` is False when any page or resource list fell short of its announced total.
    """

    target: str
    scan_id: str
    status: ScanStatus
    complete: bool
    findings: Sequence[CollectedFinding] = ()


@dataclass(frozen=True, slots=True)
class DiffEntry:
    """One fingerprint's change in one scan, with the data an alert needs to name it.

    `finding` is None for RESOLVED entries, whose finding is absent from the scan. `resource`
    is None for rule-level fingerprints. `state` is the stored state before this scan, None for
    a fingerprint without one. `inherited_from` is the rule-level state that an adopted
    resource-level fingerprint replaces, else None.
    """

    kind: DiffKind
    fingerprint: Fingerprint
    severity: Severity
    severity_before: Severity | None
    rule_name: str
    finding: Finding | None
    resource: AffectedResource | None
    state: FindingState | None = None
    inherited_from: FindingState | None = None


@dataclass(frozen=True, slots=True)
class Diff:
    """The diff of one scan. `superseded` lists the rule-level states it replaces."""

    target: str
    scan_id: str
    outcome: DiffOutcome
    entries: tuple[DiffEntry, ...] = ()
    superseded: tuple[FindingState, ...] = ()

    @property
    def changes_states(self) -> bool:
        return self.outcome is DiffOutcome.APPLIED

    @property
    def reason(self) -> str:
        """Return one sentence that explains why the diff does or does not change states."""
        return _REASONS[self.outcome]

    def counts(self) -> dict[DiffKind, int]:
        """Count the entries of each kind, with zero for the kinds that do not occur."""
        counts = Counter(entry.kind for entry in self.entries)
        return {kind: counts[kind] for kind in DiffKind}

    def of_kind(self, kind: DiffKind) -> list[DiffEntry]:
        return [entry for entry in self.entries if entry.kind is kind]


_REASONS = {
    DiffOutcome.APPLIED: "the scan completed and its collection is complete",
    DiffOutcome.SCAN_NOT_COMPLETED: "the scan did not complete, so no finding state changes",
    DiffOutcome.COLLECTION_INCOMPLETE: (
        "the collection of the scan's findings or resources is incomplete, so no finding "
        "state changes"
    ),
}


def compute_diff(states: Iterable[FindingState], scan: CollectedScan) -> Diff:
    """Compute how `scan` changes the target's finding states.

    `states` must be every stored state of the scan's target, open, resolved and superseded,
    so that a returning fingerprint reads as REOPENED rather than NEW. Raise ValueError for a
    state of another target.
    """
    outcome = _outcome_of(scan)
    if outcome is not DiffOutcome.APPLIED:
        return Diff(target=scan.target, scan_id=scan.scan_id, outcome=outcome)

    index = _StateIndex(scan.target, states)
    entries: list[DiffEntry] = []
    superseded: list[FindingState] = []
    for observation in _observe_rules(scan):
        if observation.resources is None:
            entries.extend(_diff_rule_level(scan.target, observation, index))
            continue
        entries.extend(_diff_resource_level(scan.target, observation, observation.resources, index))
        rule_state = index.open_rule_level_state(observation.rule_uuid)
        if rule_state is not None:
            superseded.append(rule_state)

    covered = {entry.fingerprint for entry in entries}
    covered.update(state.fingerprint for state in superseded)
    entries.extend(_resolved_entries(index, covered))
    return Diff(
        target=scan.target,
        scan_id=scan.scan_id,
        outcome=outcome,
        entries=tuple(entries),
        superseded=tuple(superseded),
    )


def states_of_scan(scan: CollectedScan, seen_at: datetime) -> list[FindingState]:
    """Build the open states that `scan` alone would leave, to diff one scan against another.

    The states come from whatever findings the scan holds, even when it did not complete or
    its collection is incomplete, so the caller decides whether such a comparison is useful.
    """
    as_complete = replace(scan, status=ScanStatus.COMPLETED, complete=True)
    return [
        FindingState(
            fingerprint=entry.fingerprint,
            status=StateStatus.OPEN,
            severity=entry.severity,
            first_seen_at=seen_at,
            last_seen_at=seen_at,
            rule_name=entry.rule_name,
            resource_name=entry.resource.name if entry.resource else "",
            resource_type=entry.resource.type if entry.resource else "",
        )
        for entry in compute_diff((), as_complete).entries
    ]


def _outcome_of(scan: CollectedScan) -> DiffOutcome:
    if scan.status is not ScanStatus.COMPLETED:
        return DiffOutcome.SCAN_NOT_COMPLETED
    if not scan.complete:
        return DiffOutcome.COLLECTION_INCOMPLETE
    return DiffOutcome.APPLIED


@dataclass(slots=True)
class _RuleObservation:
    """One rule as this scan reported it. `resources` maps URN to resource, None if not fetched."""

    rule_uuid: str
    finding: Finding
    resources: dict[str, AffectedResource] | None


def _observe_rules(scan: CollectedScan) -> Iterator[_RuleObservation]:
    """Merge the scan's findings by rule: the highest severity wins, resources are united."""
    by_rule: dict[str, _RuleObservation] = {}
    for collected in scan.findings:
        rule_uuid = fingerprint_of(scan.target, collected.finding.rule_uuid).rule_uuid
        resources = _resources_by_urn(collected.resources)
        known = by_rule.get(rule_uuid)
        if known is None:
            by_rule[rule_uuid] = _RuleObservation(rule_uuid, collected.finding, resources)
            continue
        if collected.finding.severity > known.finding.severity:
            known.finding = collected.finding
        if resources is not None:
            known.resources = {**(known.resources or {}), **resources}
    yield from by_rule.values()


def _resources_by_urn(
    resources: Sequence[AffectedResource] | None,
) -> dict[str, AffectedResource] | None:
    if not resources:
        return None
    by_urn: dict[str, AffectedResource] = {}
    for resource in resources:
        by_urn.setdefault(resource.urn.strip(), resource)
    return by_urn


class _StateIndex:
    """The target's states, looked up by (rule UUID, URN) and by rule."""

    def __init__(self, target: str, states: Iterable[FindingState]) -> None:
        self.by_key: dict[tuple[str, str], FindingState] = {}
        self.open_resource_states: dict[str, list[FindingState]] = {}
        for state in states:
            if state.fingerprint.target != target:
                raise ValueError(
                    f"finding state of target {state.fingerprint.target!r} passed to the diff "
                    f"of target {target!r}: load the states of the scan's target only"
                )
            rule_uuid, urn = state.fingerprint.rule_uuid, state.fingerprint.resource_urn
            self.by_key[(rule_uuid, urn)] = state
            if urn != RULE_LEVEL_URN and state.status is StateStatus.OPEN:
                self.open_resource_states.setdefault(rule_uuid, []).append(state)

    def get(self, rule_uuid: str, urn: str) -> FindingState | None:
        return self.by_key.get((rule_uuid, urn))

    def open_rule_level_state(self, rule_uuid: str) -> FindingState | None:
        state = self.by_key.get((rule_uuid, RULE_LEVEL_URN))
        if state is None or state.status is not StateStatus.OPEN:
            return None
        return state

    def open_states(self) -> Iterator[FindingState]:
        return (state for state in self.by_key.values() if state.status is StateStatus.OPEN)


def _diff_rule_level(
    target: str, observation: _RuleObservation, index: _StateIndex
) -> Iterator[DiffEntry]:
    """Entries of a rule whose resources this scan did not fetch."""
    finding = observation.finding
    resource_states = index.open_resource_states.get(observation.rule_uuid, [])
    rule_state = index.get(observation.rule_uuid, RULE_LEVEL_URN)

    # Open resource-level states keep the rule covered: they stay open and no rule-level
    # fingerprint appears. A rule-level state that is also open (left over from before the
    # resource-level ones) stays open too.
    if resource_states:
        for state in resource_states:
            yield _seen_entry(finding, state, state.resource)
        if rule_state is not None and rule_state.status is StateStatus.OPEN:
            yield _seen_entry(finding, rule_state, None)
        return

    fingerprint = Fingerprint(target, observation.rule_uuid, RULE_LEVEL_URN)
    yield _entry_for(fingerprint, finding, None, rule_state)


def _diff_resource_level(
    target: str,
    observation: _RuleObservation,
    resources: dict[str, AffectedResource],
    index: _StateIndex,
) -> Iterator[DiffEntry]:
    """Entries of a rule whose resources this scan fetched."""
    finding = observation.finding
    rule_state = index.open_rule_level_state(observation.rule_uuid)
    for urn, resource in resources.items():
        fingerprint = Fingerprint(target, observation.rule_uuid, urn)
        state = index.get(observation.rule_uuid, urn)
        if state is None and rule_state is not None:
            yield _adopted_entry(fingerprint, finding, resource, rule_state)
            continue
        yield _entry_for(fingerprint, finding, resource, state)


def _entry_for(
    fingerprint: Fingerprint,
    finding: Finding,
    resource: AffectedResource | None,
    state: FindingState | None,
) -> DiffEntry:
    if state is None:
        return DiffEntry(
            kind=DiffKind.NEW,
            fingerprint=fingerprint,
            severity=finding.severity,
            severity_before=None,
            rule_name=finding.name,
            finding=finding,
            resource=resource,
        )
    if state.status is not StateStatus.OPEN:
        return DiffEntry(
            kind=DiffKind.REOPENED,
            fingerprint=fingerprint,
            severity=finding.severity,
            severity_before=state.severity,
            rule_name=finding.name,
            finding=finding,
            resource=resource,
            state=state,
        )
    return _seen_entry(finding, state, resource)


def _seen_entry(
    finding: Finding, state: FindingState, resource: AffectedResource | None
) -> DiffEntry:
    """Entry of an open state seen again: ESCALATED if the severity rose, else UNCHANGED."""
    return DiffEntry(
        kind=_kind_by_severity(finding.severity, state.severity),
        fingerprint=state.fingerprint,
        severity=finding.severity,
        severity_before=state.severity,
        rule_name=finding.name,
        finding=finding,
        resource=resource,
        state=state,
    )


def _adopted_entry(
    fingerprint: Fingerprint,
    finding: Finding,
    resource: AffectedResource,
    rule_state: FindingState,
) -> DiffEntry:
    return DiffEntry(
        kind=_kind_by_severity(finding.severity, rule_state.severity),
        fingerprint=fingerprint,
        severity=finding.severity,
        severity_before=rule_state.severity,
        rule_name=finding.name,
        finding=finding,
        resource=resource,
        inherited_from=rule_state,
    )


def _kind_by_severity(severity: Severity, severity_before: Severity) -> DiffKind:
    if severity > severity_before:
        return DiffKind.ESCALATED
    return DiffKind.UNCHANGED


def _resolved_entries(index: _StateIndex, covered: set[Fingerprint]) -> Iterator[DiffEntry]:
    for state in index.open_states():
        if state.fingerprint in covered:
            continue
        yield DiffEntry(
            kind=DiffKind.RESOLVED,
            fingerprint=state.fingerprint,
            severity=state.severity,
            severity_before=state.severity,
            rule_name=state.rule_name,
            finding=None,
            resource=state.resource,
            state=state,
        )
