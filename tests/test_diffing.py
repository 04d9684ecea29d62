"""The pure diff: one table of cases per kind of change, then the details entries carry."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from service.diffing import (
    CollectedFinding,
    CollectedScan,
    Diff,
    DiffKind,
    DiffOutcome,
    FindingState,
    StateStatus,
    compute_diff,
    fingerprint_of,
    states_of_scan,
)
from service.digitalocean.models import AffectedResource, Finding, ScanStatus, Severity

TARGET = "production"
FIRST_SEEN_AT = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
LAST_SEEN_AT = datetime(2026, 1, 6, 6, 0, tzinfo=UTC)

OPEN = StateStatus.OPEN
RESOLVED = StateStatus.RESOLVED
SUPERSEDED = StateStatus.SUPERSEDED
NEW = DiffKind.NEW
REOPENED = DiffKind.REOPENED
ESCALATED = DiffKind.ESCALATED
UNCHANGED = DiffKind.UNCHANGED
GONE = DiffKind.RESOLVED


def finding(rule_uuid: str, severity: str = "HIGH", name: str = "") -> Finding:
    return Finding(
        rule_uuid=rule_uuid,
        name=name or f"rule {rule_uuid}",
        severity=Severity.parse(severity),
        details=f"details of {rule_uuid}",
        affected_resources_count=None,
    )


def droplet(number: int) -> AffectedResource:
    return AffectedResource(urn=f"do:droplet:{number}", name=f"web-{number}", type="Droplet")


def collected(
    rule_uuid: str,
    severity: str = "HIGH",
    resources: list[int] | None = None,
    name: str = "",
) -> CollectedFinding:
    fetched = None if resources is None else [droplet(number) for number in resources]
    return CollectedFinding(finding(rule_uuid, severity, name), fetched)


def state(
    rule_uuid: str,
    resource: int | None = None,
    status: StateStatus = OPEN,
    severity: str = "HIGH",
    times_reopened: int = 0,
) -> FindingState:
    urn = "" if resource is None else f"do:droplet:{resource}"
    return FindingState(
        fingerprint=fingerprint_of(TARGET, rule_uuid, urn),
        status=status,
        severity=Severity.parse(severity),
        first_seen_at=FIRST_SEEN_AT,
        last_seen_at=LAST_SEEN_AT,
        times_reopened=times_reopened,
        rule_name=f"rule {rule_uuid}",
        resource_name="" if resource is None else f"web-{resource}",
        resource_type="" if resource is None else "Droplet",
    )


def scan(
    *findings: CollectedFinding,
    status: ScanStatus = ScanStatus.COMPLETED,
    complete: bool = True,
) -> CollectedScan:
    return CollectedScan(
        target=TARGET, scan_id="scan-2", status=status, complete=complete, findings=findings
    )


def kinds_of(diff: Diff) -> dict[str, DiffKind]:
    """Map "rule" or "rule@urn" to the kind of its entry."""
    kinds: dict[str, DiffKind] = {}
    for entry in diff.entries:
        rule_uuid, urn = entry.fingerprint.rule_uuid, entry.fingerprint.resource_urn
        key = f"{rule_uuid}@{urn.removeprefix('do:droplet:')}" if urn else rule_uuid
        assert key not in kinds, f"two entries for {key}"
        kinds[key] = entry.kind
    return kinds


@dataclass(frozen=True)
class Case:
    states: list[FindingState]
    scan: CollectedScan
    expected: dict[str, DiffKind]
    superseded: tuple[str, ...] = ()


CASES = {
    "first scan": Case(
        states=[],
        scan=scan(collected("r1"), collected("r2", resources=[1, 2])),
        expected={"r1": NEW, "r2@1": NEW, "r2@2": NEW},
    ),
    "new among known": Case(
        states=[state("r1")],
        scan=scan(collected("r1"), collected("r2")),
        expected={"r1": UNCHANGED, "r2": NEW},
    ),
    "unchanged": Case(
        states=[state("r1", 1), state("r1", 2)],
        scan=scan(collected("r1", resources=[1, 2])),
        expected={"r1@1": UNCHANGED, "r1@2": UNCHANGED},
    ),
    "reopened": Case(
        states=[state("r1", 1, status=RESOLVED)],
        scan=scan(collected("r1", resources=[1])),
        expected={"r1@1": REOPENED},
    ),
    "reopened rule level": Case(
        states=[state("r1", status=RESOLVED)],
        scan=scan(collected("r1")),
        expected={"r1": REOPENED},
    ),
    "escalated": Case(
        states=[state("r1", 1, severity="MEDIUM")],
        scan=scan(collected("r1", "HIGH", resources=[1])),
        expected={"r1@1": ESCALATED},
    ),
    "severity drop": Case(
        states=[state("r1", 1, severity="CRITICAL")],
        scan=scan(collected("r1", "LOW", resources=[1])),
        expected={"r1@1": UNCHANGED},
    ),
    "resolved": Case(
        states=[state("r1", 1), state("r2")],
        scan=scan(collected("r2")),
        expected={"r1@1": GONE, "r2": UNCHANGED},
    ),
    "resolved stays resolved": Case(
        states=[state("r1", 1, status=RESOLVED)],
        scan=scan(),
        expected={},
    ),
    "resource set changes": Case(
        states=[state("r1", 1), state("r1", 2)],
        scan=scan(collected("r1", resources=[2, 3])),
        expected={"r1@1": GONE, "r1@2": UNCHANGED, "r1@3": NEW},
    ),
    "reworded texts": Case(
        states=[state("r1", 1)],
        scan=scan(collected("r1", resources=[1], name="Droplet firewall missing (renamed)")),
        expected={"r1@1": UNCHANGED},
    ),
    "rule uuid in other letter case": Case(
        states=[state("6b8c-aa")],
        scan=scan(collected(" 6B8C-AA ")),
        expected={"6b8c-aa": UNCHANGED},
    ),
    "rule level to resource level": Case(
        states=[state("r1")],
        scan=scan(collected("r1", resources=[1, 2])),
        expected={"r1@1": UNCHANGED, "r1@2": UNCHANGED},
        superseded=("r1",),
    ),
    "rule level to resource level escalated": Case(
        states=[state("r1", severity="MEDIUM")],
        scan=scan(collected("r1", "CRITICAL", resources=[1])),
        expected={"r1@1": ESCALATED},
        superseded=("r1",),
    ),
    "rule level to resource level with a resolved resource": Case(
        states=[state("r1"), state("r1", 1, status=RESOLVED)],
        scan=scan(collected("r1", resources=[1, 2])),
        expected={"r1@1": REOPENED, "r1@2": UNCHANGED},
        superseded=("r1",),
    ),
    "resource level to rule level": Case(
        states=[state("r1", 1), state("r1", 2), state("r1", 3, status=RESOLVED)],
        scan=scan(collected("r1")),
        expected={"r1@1": UNCHANGED, "r1@2": UNCHANGED},
    ),
    "resource level to rule level escalated": Case(
        states=[state("r1", 1, severity="LOW")],
        scan=scan(collected("r1", "HIGH")),
        expected={"r1@1": ESCALATED},
    ),
    "superseded rule level returns after its resources resolved": Case(
        states=[state("r1", status=SUPERSEDED), state("r1", 1, status=RESOLVED)],
        scan=scan(collected("r1")),
        expected={"r1": REOPENED},
    ),
    "superseded rule level stays superseded": Case(
        states=[state("r1", status=SUPERSEDED), state("r1", 1)],
        scan=scan(collected("r1")),
        expected={"r1@1": UNCHANGED},
    ),
    "resolved rule level back with resources": Case(
        states=[state("r1", status=RESOLVED)],
        scan=scan(collected("r1", resources=[1])),
        expected={"r1@1": NEW},
    ),
    "fetched but empty resources count as rule level": Case(
        states=[state("r1")],
        scan=scan(collected("r1", resources=[])),
        expected={"r1": UNCHANGED},
    ),
    "returns after its details were pruned": Case(
        # Pruning removes findings and resources but keeps states, so only states are input.
        states=[state("r1", 1, status=RESOLVED, times_reopened=2), state("r2", 5)],
        scan=scan(collected("r1", resources=[1]), collected("r2", resources=[5])),
        expected={"r1@1": REOPENED, "r2@5": UNCHANGED},
    ),
    "duplicate finding of one rule": Case(
        states=[state("r1", 1, severity="MEDIUM")],
        scan=scan(collected("r1", "MEDIUM", resources=[1]), collected("r1", "HIGH", [2])),
        expected={"r1@1": ESCALATED, "r1@2": NEW},
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_compute_diff_kinds(case: Case) -> None:
    diff = compute_diff(case.states, case.scan)

    assert diff.outcome is DiffOutcome.APPLIED
    assert diff.changes_states
    assert kinds_of(diff) == case.expected
    assert tuple(s.fingerprint.rule_uuid for s in diff.superseded) == case.superseded


NOT_APPLIED = {
    "failed scan": (ScanStatus.FAILED, True, DiffOutcome.SCAN_NOT_COMPLETED),
    "scan still in progress": (ScanStatus.IN_PROGRESS, True, DiffOutcome.SCAN_NOT_COMPLETED),
    "unknown status": (ScanStatus.UNKNOWN, True, DiffOutcome.SCAN_NOT_COMPLETED),
    "cspm not enabled": (ScanStatus.CSPM_NOT_ENABLED, True, DiffOutcome.SCAN_NOT_COMPLETED),
    "incomplete collection": (ScanStatus.COMPLETED, False, DiffOutcome.COLLECTION_INCOMPLETE),
}


@pytest.mark.parametrize(
    ("status", "complete", "outcome"), NOT_APPLIED.values(), ids=NOT_APPLIED.keys()
)
def test_compute_diff_not_applied(status: ScanStatus, complete: bool, outcome: DiffOutcome) -> None:
    states = [state("r1", 1), state("r2", status=RESOLVED)]
    partial = scan(collected("r2"), collected("r3"), status=status, complete=complete)

    diff = compute_diff(states, partial)

    assert diff.outcome is outcome
    assert not diff.changes_states
    assert diff.entries == ()
    assert diff.superseded == ()
    assert "no finding state changes" in diff.reason


def test_diff_new_entry_carries_finding_and_resource() -> None:
    diff = compute_diff([], scan(collected("r1", "CRITICAL", resources=[7])))

    (entry,) = diff.entries
    assert entry.finding == finding("r1", "CRITICAL")
    assert entry.resource == droplet(7)
    assert entry.rule_name == "rule r1"
    assert entry.severity is Severity.CRITICAL
    assert entry.severity_before is None
    assert entry.state is None


def test_diff_rule_level_entry_has_no_resource() -> None:
    diff = compute_diff([], scan(collected("r1")))

    (entry,) = diff.entries
    assert entry.fingerprint.is_rule_level
    assert entry.resource is None


def test_diff_resolved_entry_named_from_state() -> None:
    known = state("r1", 4, severity="CRITICAL")

    diff = compute_diff([known], scan())

    (entry,) = diff.entries
    assert entry.kind is GONE
    assert entry.finding is None
    assert entry.resource == droplet(4)
    assert entry.rule_name == "rule r1"
    assert entry.severity is Severity.CRITICAL
    assert entry.state == known


def test_diff_escalated_entry_has_severity_before() -> None:
    diff = compute_diff([state("r1", severity="MEDIUM")], scan(collected("r1", "HIGH")))

    (entry,) = diff.entries
    assert entry.severity is Severity.HIGH
    assert entry.severity_before is Severity.MEDIUM


def test_diff_severity_drop_entry_has_lower_severity() -> None:
    diff = compute_diff([state("r1", severity="HIGH")], scan(collected("r1", "LOW")))

    (entry,) = diff.entries
    assert entry.kind is UNCHANGED
    assert entry.severity is Severity.LOW
    assert entry.severity_before is Severity.HIGH


def test_diff_adopted_entries_inherit_rule_level_state() -> None:
    rule_state = state("r1", severity="HIGH", times_reopened=1)

    diff = compute_diff([rule_state], scan(collected("r1", resources=[1, 2])))

    assert diff.superseded == (rule_state,)
    for entry in diff.entries:
        assert entry.state is None
        assert entry.inherited_from == rule_state
        assert entry.severity_before is Severity.HIGH
    assert diff.counts()[GONE] == 0


def test_diff_kept_resource_states_carry_resource() -> None:
    diff = compute_diff([state("r1", 3)], scan(collected("r1")))

    (entry,) = diff.entries
    assert entry.resource == droplet(3)
    assert entry.finding == finding("r1")


def test_diff_counts_every_kind() -> None:
    states = [state("r1"), state("r2", status=RESOLVED), state("r3", severity="LOW")]

    diff = compute_diff(states, scan(collected("r2"), collected("r3"), collected("r4")))

    assert diff.counts() == {NEW: 1, REOPENED: 1, ESCALATED: 1, GONE: 1, UNCHANGED: 0}
    assert [entry.fingerprint.rule_uuid for entry in diff.of_kind(NEW)] == ["r4"]


def test_compute_diff_state_of_other_target_raises() -> None:
    foreign = FindingState(
        fingerprint=fingerprint_of("staging", "r1"),
        status=OPEN,
        severity=Severity.HIGH,
        first_seen_at=FIRST_SEEN_AT,
        last_seen_at=LAST_SEEN_AT,
    )

    with pytest.raises(ValueError, match="'staging'"):
        compute_diff([foreign], scan(collected("r1")))


def test_states_of_scan_diff_between_two_scans() -> None:
    earlier = scan(collected("r1", resources=[1, 2]), collected("r2", "LOW"))
    later = scan(collected("r1", resources=[2, 3]), collected("r2", "HIGH"))
    seen_at = FIRST_SEEN_AT + timedelta(days=1)

    diff = compute_diff(states_of_scan(earlier, seen_at), later)

    assert kinds_of(diff) == {"r1@1": GONE, "r1@2": UNCHANGED, "r1@3": NEW, "r2": ESCALATED}


def test_states_of_scan_incomplete_scan_still_counts() -> None:
    partial = scan(collected("r1", resources=[1]), complete=False)

    states = states_of_scan(partial, FIRST_SEEN_AT)

    assert [state.fingerprint.resource_urn for state in states] == ["do:droplet:1"]
    assert states[0].status is OPEN
