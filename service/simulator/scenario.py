"""Scenarios: the simulated team's resources, rules and successive scans.

A scenario file is YAML (see docs/simulator.md for the format). `load_scenario` validates it and
returns a `Scenario`. An invalid file raises `ScenarioError` with one line per problem, and each
line names the key path (`scans[1].findings.ssh-open`) and the fix.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources as package_files
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.digitalocean.models import Severity
from service.errors import CspmWatchError

# DigitalOcean URNs look like `do:droplet:412398741`; the ID part can be a number, a UUID, a
# domain name, an IP address or a bucket name.
URN_PATTERN = re.compile(r"^do:([a-z0-9_]+):(\S+)$")

# Display-case types of affected resources. DigitalOcean's reference shows only "Droplet"; the
# others follow the product names in its control panel.
RESOURCE_TYPE_NAMES: Mapping[str, str] = {
    "droplet": "Droplet",
    "dbaas": "Database",
    "domain": "Domain",
    "floatingip": "Reserved IP",
    "loadbalancer": "Load Balancer",
    "space": "Spaces Bucket",
    "volume": "Volume",
    "kubernetes": "Kubernetes Cluster",
    "vpc": "VPC",
    "user": "User",
}

DEFAULT_SCENARIO_FILE = "default.yaml"


class ScenarioError(CspmWatchError):
    """A scenario file or generator argument is invalid; the message names the key and the fix."""


class ScanOutcome(enum.Enum):
    """Final status of a simulated scan; IN_PROGRESS means it never finishes."""

    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CSPM_NOT_ENABLED = "CSPM_NOT_ENABLED"
    IN_PROGRESS = "IN_PROGRESS"


@dataclass(frozen=True, slots=True)
class Resource:
    """One resource of the team: `urn` is `do:TYPE:ID`, `type` is in display case."""

    urn: str
    name: str
    type: str

    @property
    def resource_id(self) -> str:
        """The ID part of the URN (`412398741` of `do:droplet:412398741`)."""
        return self.urn.split(":", 2)[2]


@dataclass(frozen=True, slots=True)
class RuleStep:
    """One mitigation step of a rule."""

    step: int
    title: str
    description: str


@dataclass(frozen=True, slots=True)
class Rule:
    """A CSPM rule; a scan reports at most one finding per rule."""

    uuid: str
    name: str
    severity: Severity
    details: str = ""
    business_impact: str = ""
    technical_details: str = ""
    mitigation_steps: tuple[RuleStep, ...] = ()
    type: str = "CSPM"
    key: str = ""


@dataclass(frozen=True, slots=True)
class ScanPlan:
    """The findings and progress of one created scan.

    `findings` maps a rule UUID to the URNs it reports. The scan stays IN_PROGRESS until
    `in_progress_s` seconds have passed since its creation and `in_progress_polls` polls have
    seen it running (both, when both are set), then ends with `outcome`.
    """

    findings: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    severity_overrides: Mapping[str, Severity] = field(default_factory=dict)
    outcome: ScanOutcome = ScanOutcome.COMPLETED
    in_progress_s: float = 0.0
    in_progress_polls: int = 0
    label: str = ""


@dataclass(frozen=True, slots=True)
class TierCoverage:
    resources: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PlanDowngrade:
    resources: tuple[str, ...] = ()
    effective_at: str = ""


@dataclass(frozen=True)
class Scenario:
    """A simulated team. The Nth created scan follows `scans[N-1]`; the last entry repeats."""

    name: str
    resources: tuple[Resource, ...]
    rules: tuple[Rule, ...]
    scans: tuple[ScanPlan, ...]
    description: str = ""
    tier_coverage: Mapping[str, TierCoverage] = field(default_factory=dict)
    plan_downgrades: Mapping[str, PlanDowngrade] = field(default_factory=dict)
    resources_by_urn: Mapping[str, Resource] = field(init=False, repr=False, compare=False)
    rules_by_uuid: Mapping[str, Rule] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.scans:
            raise ScenarioError(f"scenario {self.name!r}: scans is empty; add at least one scan")
        object.__setattr__(self, "resources_by_urn", {r.urn: r for r in self.resources})
        object.__setattr__(self, "rules_by_uuid", {r.uuid: r for r in self.rules})

    def scan_plan(self, number: int) -> ScanPlan:
        """Return the plan of the `number`th created scan (1-based); past the end, the last."""
        if number < 1:
            raise ValueError(f"scan numbers start at 1, got {number}")
        return self.scans[min(number, len(self.scans)) - 1]

    @property
    def affected_resource_total(self) -> int:
        """The number of (rule, resource) pairs in the largest scan plan."""
        return max(sum(len(urns) for urns in plan.findings.values()) for plan in self.scans)


def resource_type_name(urn: str) -> str:
    """Return the display-case type for a URN, for URNs that are not in the scenario."""
    match = URN_PATTERN.match(urn)
    if match is None:
        return ""
    urn_type = match.group(1)
    return RESOURCE_TYPE_NAMES.get(urn_type, urn_type.title())


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate a scenario file; raise ScenarioError naming every invalid key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ScenarioError(f"cannot read scenario file {path}: {error.strerror}") from None
    return parse_scenario(text, source=str(path))


def default_scenario() -> Scenario:
    """Return the built-in scenario: a small team whose first scans show a baseline, new and
    escalated findings, then resolved ones."""
    text = (
        package_files.files("service.simulator")
        .joinpath("scenarios", DEFAULT_SCENARIO_FILE)
        .read_text(encoding="utf-8")
    )
    return parse_scenario(text, source=f"built-in {DEFAULT_SCENARIO_FILE}")


def parse_scenario(text: str, *, source: str = "scenario") -> Scenario:
    """Parse scenario YAML text; `source` names the file in error messages."""
    try:
        document = yaml.safe_load(text)
    except RecursionError:
        raise ScenarioError(f"{source}: invalid YAML: the structure is nested too deeply") from None
    except yaml.YAMLError as error:
        raise ScenarioError(f"{source}: invalid YAML: {error}") from None
    if not isinstance(document, dict):
        raise ScenarioError(f"{source}: expected a mapping with name, resources, rules and scans")
    try:
        model = _ScenarioModel.model_validate(document)
    except ValidationError as error:
        raise ScenarioError(_format_validation_error(source, error)) from None
    if model.generate is not None:
        return _generate_from(model, source)
    return _build_scenario(model, source)


# The pydantic models below describe the file; they are private because the rest of the
# simulator works with the frozen dataclasses above.


class _FileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SeverityName = Literal["CRITICAL", "HIGH", "MEDIUM", "LOW"]


class _StepModel(_FileModel):
    step: int = Field(ge=1)
    title: str = Field(min_length=1)
    description: str = ""


class _RuleModel(_FileModel):
    uuid: UUID
    key: str = ""
    name: str = Field(min_length=1)
    severity: SeverityName
    type: str = "CSPM"
    details: str = ""
    business_impact: str = ""
    technical_details: str = ""
    mitigation_steps: list[_StepModel] = []


class _ResourceModel(_FileModel):
    urn: str = Field(pattern=URN_PATTERN.pattern)
    name: str
    type: str = ""


class _ScanModel(_FileModel):
    label: str = ""
    outcome: Literal["COMPLETED", "FAILED", "CSPM_NOT_ENABLED", "IN_PROGRESS"] = "COMPLETED"
    in_progress_s: float = Field(default=0.0, ge=0)
    in_progress_polls: int = Field(default=0, ge=0)
    findings: dict[str, list[str]] = {}
    severity: dict[str, SeverityName] = {}


class _TierModel(_FileModel):
    resources: list[str] = []
    tags: list[str] = []


class _DowngradeModel(_FileModel):
    resources: list[str] = []
    effective_at: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


# Bounds of a generated team: well above the largest benchmark team (300 rules, 50,000
# resources), and low enough that a typo cannot make the simulator use gigabytes of memory.
MAX_GENERATED_RULES = 5_000
MAX_GENERATED_RESOURCES = 1_000_000
MAX_GENERATED_SCANS = 1_000


class _GenerateModel(_FileModel):
    seed: int
    rules: int = Field(ge=1, le=MAX_GENERATED_RULES)
    resources: int = Field(ge=1, le=MAX_GENERATED_RESOURCES)
    scans: int = Field(default=3, ge=1, le=MAX_GENERATED_SCANS)
    in_progress_polls: int = Field(default=1, ge=0)


class _ScenarioModel(_FileModel):
    name: str = Field(min_length=1)
    description: str = ""
    resources: list[_ResourceModel] = []
    rules: list[_RuleModel] = []
    scans: list[_ScanModel] = []
    tier_coverage: dict[str, _TierModel] = {}
    plan_downgrades: dict[str, _DowngradeModel] = {}
    generate: _GenerateModel | None = None


def _format_validation_error(source: str, error: ValidationError) -> str:
    lines = [f"{source}: invalid scenario:"]
    for problem in error.errors():
        path = _format_location(problem["loc"])
        value = problem.get("input")
        shown = "" if isinstance(value, dict | list) else f" (got {value!r})"
        lines.append(f"  {path}: {problem['msg']}{shown}")
    return "\n".join(lines)


def _format_location(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or "(top level)"


def _generate_from(model: _ScenarioModel, source: str) -> Scenario:
    if model.resources or model.rules or model.scans:
        raise ScenarioError(
            f"{source}: generate cannot be combined with resources, rules or scans; "
            "remove either generate or the hand-written lists"
        )
    # Imported here because the generator builds on this module.
    from service.simulator.generator import generate_scenario

    assert model.generate is not None
    options = model.generate
    return generate_scenario(
        options.seed,
        rules=options.rules,
        resources=options.resources,
        scans=options.scans,
        in_progress_polls=options.in_progress_polls,
        name=model.name,
    )


def _build_scenario(model: _ScenarioModel, source: str) -> Scenario:
    problems: list[str] = []
    resources = _build_resources(model.resources, problems)
    rules = _build_rules(model.rules, problems)
    rule_index = _rule_index(rules)
    known_urns = {resource.urn for resource in resources}
    scans = tuple(
        _build_scan(index, scan, rule_index, known_urns, problems)
        for index, scan in enumerate(model.scans)
    )
    if not model.scans:
        problems.append("scans: the list is empty; add at least one scan")
    if problems:
        raise ScenarioError("\n".join([f"{source}: invalid scenario:", *problems]))
    return Scenario(
        name=model.name,
        description=model.description.strip(),
        resources=resources,
        rules=rules,
        scans=scans,
        tier_coverage={
            tier: TierCoverage(tuple(value.resources), tuple(value.tags))
            for tier, value in model.tier_coverage.items()
        },
        plan_downgrades={
            tier: PlanDowngrade(tuple(value.resources), value.effective_at)
            for tier, value in model.plan_downgrades.items()
        },
    )


def _build_resources(models: list[_ResourceModel], problems: list[str]) -> tuple[Resource, ...]:
    seen: set[str] = set()
    resources = []
    for index, model in enumerate(models):
        if model.urn in seen:
            problems.append(f"  resources[{index}].urn: duplicate URN {model.urn!r}")
        seen.add(model.urn)
        resource_type = model.type or resource_type_name(model.urn)
        resources.append(Resource(urn=model.urn, name=model.name, type=resource_type))
    return tuple(resources)


def _build_rules(models: list[_RuleModel], problems: list[str]) -> tuple[Rule, ...]:
    seen: set[str] = set()
    rules = []
    for index, model in enumerate(models):
        uuid = str(model.uuid)
        for label, value in (("uuid", uuid), ("key", model.key)):
            if value and value in seen:
                problems.append(f"  rules[{index}].{label}: {value!r} is used by another rule")
            seen.add(value)
        rules.append(
            Rule(
                uuid=uuid,
                key=model.key or uuid,
                name=model.name,
                severity=Severity(model.severity),
                type=model.type,
                details=model.details.strip(),
                business_impact=model.business_impact.strip(),
                technical_details=model.technical_details.strip(),
                mitigation_steps=tuple(
                    RuleStep(step.step, step.title, step.description.strip())
                    for step in model.mitigation_steps
                ),
            )
        )
    return tuple(rules)


def _rule_index(rules: tuple[Rule, ...]) -> dict[str, Rule]:
    index: dict[str, Rule] = {}
    for rule in rules:
        index[rule.uuid] = rule
        index[rule.key] = rule
    return index


def _build_scan(
    index: int,
    model: _ScanModel,
    rules: Mapping[str, Rule],
    known_urns: set[str],
    problems: list[str],
) -> ScanPlan:
    findings: dict[str, tuple[str, ...]] = {}
    for reference, urns in model.findings.items():
        rule = _resolve_rule(f"scans[{index}].findings.{reference}", reference, rules, problems)
        if rule is None:
            continue
        findings[rule.uuid] = _checked_urns(index, reference, urns, known_urns, problems)
    overrides: dict[str, Severity] = {}
    for reference, severity in model.severity.items():
        rule = _resolve_rule(f"scans[{index}].severity.{reference}", reference, rules, problems)
        if rule is not None:
            overrides[rule.uuid] = Severity(severity)
    return ScanPlan(
        findings=findings,
        severity_overrides=overrides,
        outcome=ScanOutcome(model.outcome),
        in_progress_s=model.in_progress_s,
        in_progress_polls=model.in_progress_polls,
        label=model.label,
    )


def _resolve_rule(
    path: str, reference: str, rules: Mapping[str, Rule], problems: list[str]
) -> Rule | None:
    rule = rules.get(reference)
    if rule is None:
        problems.append(
            f"  {path}: unknown rule {reference!r}; use the key or uuid of a rule under rules"
        )
    return rule


def _checked_urns(
    index: int, reference: str, urns: list[str], known_urns: set[str], problems: list[str]
) -> tuple[str, ...]:
    seen: set[str] = set()
    for position, urn in enumerate(urns):
        path = f"scans[{index}].findings.{reference}[{position}]"
        if urn not in known_urns:
            problems.append(f"  {path}: unknown resource {urn!r}; add it under resources")
        if urn in seen:
            problems.append(f"  {path}: {urn!r} is listed twice")
        seen.add(urn)
    return tuple(urns)


def to_plain_data(value: Any) -> Any:
    """Convert tier coverage and plan downgrade values to JSON-ready dictionaries."""
    if isinstance(value, TierCoverage):
        return {"resources": list(value.resources), "tags": list(value.tags)}
    if isinstance(value, PlanDowngrade):
        return {"resources": list(value.resources), "effective_at": value.effective_at}
    raise TypeError(f"cannot convert {type(value).__name__} to JSON data")
