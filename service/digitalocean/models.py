"""Typed values of the DigitalOcean Security API.

The API spells enumerations in upper case, but DigitalOcean's own Go client and CLI fixtures use
lower case, so parsing is case-insensitive. No field of a scan is required by the OpenAPI file;
the parsers in the client decide what a usable value is.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, TypeVar

T = TypeVar("T")


class Severity(enum.Enum):
    """Finding severity, ordered: LOW < MEDIUM < HIGH < CRITICAL."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]

    @classmethod
    def parse(cls, value: str) -> Severity:
        """Parse a severity in any letter case; raise ValueError naming the value otherwise."""
        try:
            return cls(value.strip().upper())
        except (ValueError, AttributeError):
            allowed = ", ".join(member.value for member in cls)
            raise ValueError(f"invalid severity {value!r}: expected one of {allowed}") from None

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank >= other.rank


_SEVERITY_RANK = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


class ScanStatus(enum.Enum):
    """Scan status. UNKNOWN stands for any status the OpenAPI file does not list."""

    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CSPM_NOT_ENABLED = "CSPM_NOT_ENABLED"
    SCAN_NOT_RUN = "SCAN_NOT_RUN"
    UNKNOWN = "UNKNOWN"

    @classmethod
    def parse(cls, value: str | None) -> ScanStatus:
        """Parse a status in any letter case; an unlisted or missing status is UNKNOWN."""
        if not isinstance(value, str):
            return cls.UNKNOWN
        try:
            status = cls(value.strip().upper())
        except ValueError:
            return cls.UNKNOWN
        return status

    @property
    def is_terminal(self) -> bool:
        """Whether the scan will not change any more. IN_PROGRESS and UNKNOWN are still running."""
        return self not in (ScanStatus.IN_PROGRESS, ScanStatus.UNKNOWN)


@dataclass(frozen=True, slots=True)
class MitigationStep:
    step: int | None
    title: str
    description: str


@dataclass(frozen=True, slots=True)
class Finding:
    """DigitalOcean's result for one rule in one scan.

    `finding_uuid` is what the affected-resources path takes: the finding's own `uuid` or `id`
    if the API ever returns one, else its `rule_uuid`.
    """

    rule_uuid: str
    name: str
    severity: Severity
    details: str = ""
    found_at: datetime | None = None
    business_impact: str = ""
    technical_details: str = ""
    mitigation_steps: tuple[MitigationStep, ...] = ()
    affected_resources_count: int | None = None
    finding_uuid: str = ""

    def __post_init__(self) -> None:
        if not self.finding_uuid:
            object.__setattr__(self, "finding_uuid", self.rule_uuid)


@dataclass(frozen=True, slots=True)
class AffectedResource:
    """A resource a finding applies to; `type` is in display case (`Droplet`)."""

    urn: str
    name: str
    type: str


@dataclass(frozen=True, slots=True)
class Scan:
    """One CSPM scan. `status_text` keeps the status exactly as the API sent it.

    `findings` holds the findings of the page that came with the response, not necessarily all
    of them: the client's finding iterators page through the rest.
    """

    id: str
    status: ScanStatus
    status_text: str = ""
    created_at: datetime | None = None
    findings: tuple[Finding, ...] = ()


@dataclass(frozen=True, slots=True)
class Suppression:
    """DigitalOcean's per-rule, per-resource mute; DELETE takes its `id`."""

    id: str
    rule_uuid: str
    rule_name: str = ""
    resource_id: str = ""
    resource_type: str = ""


@dataclass(frozen=True, slots=True)
class TierCoverage:
    resources: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PlanDowngrade:
    resources: tuple[str, ...] = ()
    effective_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Settings:
    """Security settings: every suppression (all pages), tier coverage and planned downgrades."""

    suppressions: tuple[Suppression, ...] = ()
    tier_coverage: dict[str, TierCoverage] = field(default_factory=dict)
    plan_downgrades: dict[str, PlanDowngrade] = field(default_factory=dict)
    suppressions_complete: bool = True
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Collected(Generic[T]):
    """Every item that paging returned, and whether that is all there is.

    `complete` is False when the pages fell short of `meta.total` or of the expected count, a
    next link repeated or pointed elsewhere, pages overlapped, or paging stopped at its bound.
    `problems` contains one sentence per reason.
    """

    items: tuple[T, ...]
    complete: bool = True
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CollectedScan:
    """A scan and every finding of it. `scan.findings` is empty: the findings are in `findings`."""

    scan: Scan
    findings: Collected[Finding]
