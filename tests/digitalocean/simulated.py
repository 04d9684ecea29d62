"""Scenarios of exact sizes for the client tests, and a client factory for a simulator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.digitalocean.client import SecurityClient
from service.digitalocean.models import Severity
from service.simulator.scenario import Resource, Rule, ScanPlan, Scenario


def rule_uuid(number: int) -> str:
    return f"00000000-0000-4000-8000-{number:012d}"


def droplet(number: int) -> Resource:
    return Resource(urn=f"do:droplet:{number}", name=f"droplet-{number}", type="Droplet")


def sized_scenario(resource_counts: Sequence[int], *, team_size: int | None = None) -> Scenario:
    """Return a team whose scans report one finding per count, with that many resources each."""
    team = tuple(droplet(number) for number in range(team_size or max(resource_counts, default=1)))
    rules = tuple(
        Rule(uuid=rule_uuid(number), name=f"Rule {number:04d}", severity=Severity.HIGH)
        for number in range(len(resource_counts))
    )
    findings = {
        rule.uuid: tuple(resource.urn for resource in team[:count])
        for rule, count in zip(rules, resource_counts, strict=True)
    }
    return Scenario(
        name="sized",
        resources=team,
        rules=rules,
        scans=(ScanPlan(findings=findings),),
    )


def client_for(simulator: Any, **options: Any) -> SecurityClient:
    """Return a client of `simulator` with fast retries, so fault tests stay short."""
    options.setdefault("retry_backoff_s", 0.01)
    options.setdefault("timeout_s", 5.0)
    return SecurityClient(simulator.token, api_url=simulator.url, **options)
