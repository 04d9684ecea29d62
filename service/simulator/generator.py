"""Generate large simulated teams for load tests and benchmarks.

`generate_scenario` is deterministic for a seed. Rule sizes follow a power law over a random
ranking of the rules, so a few rules hit thousands of resources and most hit a handful. Real
CSPM results look like this because one misconfiguration (missing backups, no firewall) spreads
across a fleet while most rules match a few resources. Later scans drift from the baseline:
resources resolve and appear, whole findings resolve and reopen, new rules start to match, and
a few findings escalate.
"""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from service.digitalocean.models import Severity
from service.simulator.scenario import (
    RESOURCE_TYPE_NAMES,
    PlanDowngrade,
    Resource,
    Rule,
    RuleStep,
    ScanPlan,
    Scenario,
    ScenarioError,
    TierCoverage,
    default_scenario,
)

# Share of each resource type in a generated team (weights, not percentages).
_TYPE_WEIGHTS: dict[str, int] = {
    "droplet": 45,
    "volume": 14,
    "space": 9,
    "dbaas": 8,
    "vpc": 5,
    "domain": 5,
    "loadbalancer": 5,
    "kubernetes": 4,
    "floatingip": 3,
    "user": 2,
}

# Resource type that each rule of the built-in scenario applies to.
_BUILT_IN_RULE_TYPES: dict[str, str] = {
    "firewall-all-ports": "droplet",
    "droplet-backups": "droplet",
    "ssh-open": "droplet",
    "droplet-no-firewall": "droplet",
    "db-public": "dbaas",
    "member-2fa": "user",
    "spaces-public-write": "space",
    "spaces-public-list": "space",
    "volume-unattached": "volume",
    "lb-http": "loadbalancer",
    "k8s-auto-upgrade": "kubernetes",
    "k8s-ha": "kubernetes",
    "db-eol": "dbaas",
    "monitoring-agent": "droplet",
    "db-port-open": "droplet",
    "domain-caa": "domain",
    "reserved-ip-unassigned": "floatingip",
    "vpc-default": "vpc",
}

# Services whose exposure to the internet makes a family of realistic firewall rules.
_EXPOSED_SERVICES: tuple[tuple[str, int, Severity], ...] = (
    ("RDP", 3389, Severity.CRITICAL),
    ("Telnet", 23, Severity.CRITICAL),
    ("Docker API", 2375, Severity.CRITICAL),
    ("Kubelet API", 10250, Severity.CRITICAL),
    ("MySQL", 3306, Severity.HIGH),
    ("PostgreSQL", 5432, Severity.HIGH),
    ("Redis", 6379, Severity.HIGH),
    ("MongoDB", 27017, Severity.HIGH),
    ("Elasticsearch", 9200, Severity.HIGH),
    ("Memcached", 11211, Severity.HIGH),
    ("etcd", 2379, Severity.HIGH),
    ("SMB", 445, Severity.HIGH),
    ("Microsoft SQL Server", 1433, Severity.HIGH),
    ("CouchDB", 5984, Severity.HIGH),
    ("Cassandra", 9042, Severity.HIGH),
    ("FTP", 21, Severity.MEDIUM),
    ("Kibana", 5601, Severity.MEDIUM),
    ("Prometheus", 9090, Severity.MEDIUM),
    ("RabbitMQ management", 15672, Severity.MEDIUM),
    ("SMTP", 25, Severity.MEDIUM),
    ("VNC", 5900, Severity.HIGH),
    ("SNMP", 161, Severity.MEDIUM),
    ("NFS", 2049, Severity.HIGH),
    ("HTTP alternate", 8080, Severity.LOW),
)

# Names chosen by users can contain any character, so a few generated names are unusual.
_UNUSUAL_NAMES: tuple[str, ...] = (
    "web «prod» #{n}",
    "Ana's box {n}",
    'db "primary" {n}',
    "<script>alert({n})</script>",
    "naïve-café-{n}",
    "日本語-サーバー-{n}",
    "emoji-🚀-{n}",
    "tab\tand space {n}",
    "  leading-spaces-{n}",
    "x" * 200 + "-{n}",
)
_UNUSUAL_NAME_SHARE = 0.03

_NAME_PREFIXES: dict[str, tuple[str, ...]] = {
    "droplet": ("web", "api", "worker", "cache", "batch", "ci-runner", "bastion", "app"),
    "volume": ("vol-data", "vol-logs", "vol-scratch", "vol-backup"),
    "space": ("assets", "uploads", "exports", "artifacts", "backups"),
    "dbaas": ("pg", "mysql", "redis", "mongo", "kafka"),
    "vpc": ("vpc",),
    "domain": ("shop", "status", "api", "docs"),
    "loadbalancer": ("lb-public", "lb-internal"),
    "kubernetes": ("k8s",),
    "floatingip": ("ip",),
    "user": ("member",),
}
_ENVIRONMENTS = ("prod", "staging", "dev", "qa")
_REGIONS = ("ams3", "nyc1", "nyc3", "sfo3", "fra1", "lon1", "sgp1", "tor1", "blr1", "syd1")

# Drift rates after the baseline, per scan and per rule unless noted.
_BASELINE_ACTIVE_SHARE = 0.85
_ALWAYS_IN_BASELINE_SIZE = 100
_RESOURCE_RESOLVE_SHARE = 0.05
_RESOURCE_GROWTH_SHARE = 0.06
_RULE_RESOLVE_CHANCE = 0.04
_RULE_REOPEN_CHANCE = 0.3
_RULE_APPEAR_CHANCE = 0.25
_ESCALATION_CHANCE = 0.03


@dataclass(frozen=True, slots=True)
class _RuleTemplate:
    name: str
    severity: Severity
    resource_type: str
    details: str
    business_impact: str
    technical_details: str
    steps: tuple[RuleStep, ...]


def generate_scenario(
    seed: int,
    *,
    rules: int,
    resources: int,
    scans: int = 3,
    skew: float = 1.5,
    affected_per_resource: float = 1.0,
    in_progress_polls: int = 1,
    name: str | None = None,
) -> Scenario:
    """Build a team of `resources` resources and `rules` rules with `scans` scan plans.

    About `resources * affected_per_resource` (rule, resource) pairs are affected in the
    baseline, spread over the rules by a power law with exponent `skew` (higher is more
    skewed). Every scan takes `in_progress_polls` polls to finish. The same arguments always
    give the same scenario.
    """
    _check_arguments(rules, resources, scans, skew, affected_per_resource)
    rng = random.Random(seed)
    team = _generate_resources(rng, resources)
    pools = _pools_by_type(team)
    templates = _rule_templates()
    generated_rules, rule_types = _generate_rules(rng, rules, templates)
    pool_for_rule = [pools.get(rule_type) or pools["*"] for rule_type in rule_types]
    sizes = _rule_sizes(
        rng, [len(pool) for pool in pool_for_rule], round(resources * affected_per_resource), skew
    )
    plans = _generate_plans(rng, generated_rules, pool_for_rule, sizes, scans, in_progress_polls)
    return Scenario(
        name=name or f"generated-{seed}",
        description=(
            f"Generated team (seed {seed}): {resources} resources, {rules} rules, {scans} scans."
        ),
        resources=tuple(team),
        rules=tuple(generated_rules),
        scans=tuple(plans),
        tier_coverage={"basic": TierCoverage(tags=("production",))},
        plan_downgrades={
            "basic": PlanDowngrade(resources=(team[0].urn,), effective_at="2026-09-01T00:00:00Z")
        },
    )


def _check_arguments(
    rules: int, resources: int, scans: int, skew: float, affected_per_resource: float
) -> None:
    for label, value in (("rules", rules), ("resources", resources), ("scans", scans)):
        if value < 1:
            raise ScenarioError(f"generate_scenario: {label} must be at least 1, got {value}")
    if skew <= 0:
        raise ScenarioError(f"generate_scenario: skew must be positive, got {skew}")
    if affected_per_resource <= 0:
        raise ScenarioError(
            "generate_scenario: affected_per_resource must be positive, "
            f"got {affected_per_resource}"
        )


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _generate_resources(rng: random.Random, count: int) -> list[Resource]:
    types = rng.choices(list(_TYPE_WEIGHTS), weights=list(_TYPE_WEIGHTS.values()), k=count)
    team = []
    for number, urn_type in enumerate(types, start=1):
        resource_id = _resource_id(rng, urn_type, number)
        team.append(
            Resource(
                urn=f"do:{urn_type}:{resource_id}",
                name=_resource_name(rng, urn_type, number),
                type=RESOURCE_TYPE_NAMES[urn_type],
            )
        )
    return team


def _resource_id(rng: random.Random, urn_type: str, number: int) -> str:
    if urn_type == "droplet":
        return str(400_000_000 + number)
    if urn_type == "space":
        return f"bucket-{number:06d}"
    if urn_type == "domain":
        return f"site-{number}.example"
    if urn_type == "floatingip":
        # 198.18.0.0/15 is reserved for benchmarks (RFC 2544), so these never clash with real ones.
        return f"198.{18 + number // 65536 % 2}.{number // 256 % 256}.{number % 256}"
    return _uuid(rng)


def _resource_name(rng: random.Random, urn_type: str, number: int) -> str:
    if rng.random() < _UNUSUAL_NAME_SHARE:
        return rng.choice(_UNUSUAL_NAMES).format(n=number)
    if urn_type == "user":
        return f"member-{number}@team.example"
    prefix = rng.choice(_NAME_PREFIXES[urn_type])
    return f"{prefix}-{rng.choice(_ENVIRONMENTS)}-{rng.choice(_REGIONS)}-{number:05d}"


def _pools_by_type(team: Sequence[Resource]) -> dict[str, list[str]]:
    pools: dict[str, list[str]] = {"*": [resource.urn for resource in team]}
    for resource in team:
        urn_type = resource.urn.split(":", 2)[1]
        pools.setdefault(urn_type, []).append(resource.urn)
    return pools


def _rule_templates() -> list[_RuleTemplate]:
    templates = [
        _RuleTemplate(
            name=rule.name,
            severity=rule.severity,
            resource_type=_BUILT_IN_RULE_TYPES.get(rule.key, "droplet"),
            details=rule.details,
            business_impact=rule.business_impact,
            technical_details=rule.technical_details,
            steps=rule.mitigation_steps,
        )
        for rule in default_scenario().rules
    ]
    templates.extend(_exposed_service_template(*service) for service in _EXPOSED_SERVICES)
    return templates


def _exposed_service_template(service: str, port: int, severity: Severity) -> _RuleTemplate:
    return _RuleTemplate(
        name=f"{service} Port {port} Open to the Internet",
        severity=severity,
        resource_type="droplet",
        details=(
            f"A Cloud Firewall rule allows TCP port {port} ({service}) on this Droplet from any "
            "IPv4 or IPv6 address."
        ),
        business_impact=(
            f"{service} is scanned for continuously by automated attack tools. An exposed "
            "service that is unpatched or weakly authenticated can lead to data theft or a "
            "compromised Droplet."
        ),
        technical_details=(
            f"An inbound rule allows port {port} from 0.0.0.0/0 or ::/0, and a process on the "
            "Droplet accepts connections on that port."
        ),
        steps=(
            RuleStep(
                1,
                "Restrict the source",
                f"Allow port {port} only from the addresses or tags that need it.",
            ),
            RuleStep(
                2,
                "Use the VPC",
                f"Reach {service} over the VPC's private network instead of the public interface.",
            ),
        ),
    )


def _generate_rules(
    rng: random.Random, count: int, templates: Sequence[_RuleTemplate]
) -> tuple[list[Rule], list[str]]:
    rules = []
    rule_types = []
    for index in range(count):
        template = templates[index % len(templates)]
        round_number = index // len(templates)
        name = template.name if round_number == 0 else f"{template.name} (check {index + 1})"
        severity = template.severity if round_number == 0 else _random_severity(rng)
        rules.append(
            Rule(
                uuid=_uuid(rng),
                name=name,
                severity=severity,
                details=template.details,
                business_impact=template.business_impact,
                technical_details=template.technical_details,
                mitigation_steps=template.steps,
                key=f"rule-{index + 1}",
            )
        )
        rule_types.append(template.resource_type)
    return rules, rule_types


def _random_severity(rng: random.Random) -> Severity:
    return rng.choices(
        [Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW],
        weights=[5, 25, 40, 30],
    )[0]


def _rule_sizes(
    rng: random.Random, pool_sizes: Sequence[int], total: int, skew: float
) -> list[int]:
    """Return how many resources each rule hits at baseline: rank r gets a share 1/r^skew.

    The largest shares go to random rules whose resource type has room for them, so the total
    stays near `total` even when a small type (Kubernetes clusters, users) is drawn.
    """
    count = len(pool_sizes)
    weights = [1.0 / rank**skew for rank in range(1, count + 1)]
    weight_sum = sum(weights)
    shares = [max(1, round(total * weight / weight_sum)) for weight in weights]
    unassigned = list(range(count))
    rng.shuffle(unassigned)
    sizes = [0] * count
    for share in shares:
        fitting = [index for index in unassigned if pool_sizes[index] >= share]
        chosen = fitting[0] if fitting else max(unassigned, key=lambda index: pool_sizes[index])
        unassigned.remove(chosen)
        sizes[chosen] = min(share, pool_sizes[chosen])
    return sizes


def _generate_plans(
    rng: random.Random,
    rules: Sequence[Rule],
    pools: Sequence[list[str]],
    sizes: Sequence[int],
    scans: int,
    in_progress_polls: int,
) -> list[ScanPlan]:
    current: dict[int, list[str]] = {}
    for index, size in enumerate(sizes):
        # Widespread findings are long-standing, so the largest ones are all in the baseline.
        if size >= _ALWAYS_IN_BASELINE_SIZE or rng.random() < _BASELINE_ACTIVE_SHARE:
            current[index] = rng.sample(pools[index], min(size, len(pools[index])))
    escalated: dict[str, Severity] = {}
    resolved: dict[int, list[str]] = {}
    plans = [_plan(rules, current, escalated, in_progress_polls, "baseline")]
    for number in range(2, scans + 1):
        _drift(rng, rules, pools, sizes, current, resolved, escalated)
        plans.append(_plan(rules, current, escalated, in_progress_polls, f"scan {number}"))
    return plans


def _drift(
    rng: random.Random,
    rules: Sequence[Rule],
    pools: Sequence[list[str]],
    sizes: Sequence[int],
    current: dict[int, list[str]],
    resolved: dict[int, list[str]],
    escalated: dict[str, Severity],
) -> None:
    """Change `current` in place from one scan to the next."""
    for index in sorted(current):
        if rng.random() < _RULE_RESOLVE_CHANCE:
            resolved[index] = current.pop(index)
            continue
        current[index] = _drift_resources(rng, current[index], pools[index])
        rule = rules[index]
        if rng.random() < _ESCALATION_CHANCE and rule.severity is not Severity.CRITICAL:
            escalated[rule.uuid] = _next_severity(escalated.get(rule.uuid, rule.severity))
    for index in sorted(resolved):
        if index not in current and rng.random() < _RULE_REOPEN_CHANCE:
            current[index] = resolved.pop(index)
    for index in range(len(rules)):
        if index in current or index in resolved or rng.random() >= _RULE_APPEAR_CHANCE:
            continue
        current[index] = rng.sample(pools[index], min(sizes[index], len(pools[index])))


def _drift_resources(rng: random.Random, urns: list[str], pool: list[str]) -> list[str]:
    kept = [urn for urn in urns if rng.random() >= _RESOURCE_RESOLVE_SHARE] or urns[:1]
    growth = math.ceil(len(urns) * _RESOURCE_GROWTH_SHARE * rng.random() * 2)
    present = set(kept)
    for urn in rng.sample(pool, min(growth, len(pool))):
        if urn not in present:
            kept.append(urn)
            present.add(urn)
    return kept


def _next_severity(severity: Severity) -> Severity:
    order = [Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL]
    return order[min(order.index(severity) + 1, len(order) - 1)]


def _plan(
    rules: Sequence[Rule],
    current: dict[int, list[str]],
    escalated: dict[str, Severity],
    in_progress_polls: int,
    label: str,
) -> ScanPlan:
    return ScanPlan(
        findings={rules[index].uuid: tuple(urns) for index, urns in sorted(current.items())},
        severity_overrides=dict(escalated),
        in_progress_polls=in_progress_polls,
        label=label,
    )
