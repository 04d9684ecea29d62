"""`cspm-watch plan show|set`: which resources and tags each CSPM plan tier covers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from service.commands.common import open_client, pick_target
from service.commands.output import OutputFormat, json_time, print_json, print_table
from service.commands.scans import EXIT_OK
from service.config import Settings
from service.digitalocean.models import PlanDowngrade, TierCoverage


async def show_plan(settings: Settings, target_name: str | None, output: OutputFormat) -> int:
    """Print the tier coverage and the planned downgrades of the team."""
    target = pick_target(settings, target_name)
    async with open_client(settings, target) as client:
        team_settings = await client.get_settings()
    _print_plan(team_settings.tier_coverage, team_settings.plan_downgrades, output)
    return EXIT_OK


async def set_tier_coverage(
    settings: Settings,
    target_name: str | None,
    tier: str,
    resource_urns: Sequence[str],
    tags: Sequence[str],
    output: OutputFormat,
) -> int:
    """Set the resources and tags that `tier` covers, and print the coverage DigitalOcean
    stored.

    The update sends every tier, the others as they are now, so that the request changes only
    `tier` whether DigitalOcean replaces the whole coverage or merges it.
    """
    target = pick_target(settings, target_name)
    async with open_client(settings, target) as client:
        current = (await client.get_settings()).tier_coverage
        coverage = {
            **current,
            tier: TierCoverage(resources=tuple(resource_urns), tags=tuple(tags)),
        }
        stored = await client.update_plan(coverage)
    _print_plan(stored, None, output)
    return EXIT_OK


def _print_plan(
    coverage: Mapping[str, TierCoverage],
    downgrades: Mapping[str, PlanDowngrade] | None,
    output: OutputFormat,
) -> None:
    """Print the coverage, and the downgrades unless they are None (not read)."""
    if output is OutputFormat.JSON:
        print_json(_plan_json(coverage, downgrades))
        return
    print_table(
        ["Tier", "Resources", "Tags"],
        [(tier, list(item.resources), list(item.tags)) for tier, item in coverage.items()],
        title="Tier coverage",
        empty="No tier covers any resource or tag.",
    )
    if downgrades:
        print_table(
            ["Tier", "Resources", "Effective At"],
            [(tier, list(item.resources), item.effective_at) for tier, item in downgrades.items()],
            title="Planned downgrades",
        )


def _plan_json(
    coverage: Mapping[str, TierCoverage], downgrades: Mapping[str, PlanDowngrade] | None
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "tier_coverage": {
            tier: {"resources": list(item.resources), "tags": list(item.tags)}
            for tier, item in coverage.items()
        }
    }
    if downgrades is not None:
        data["plan_downgrades"] = {
            tier: {"resources": list(item.resources), "effective_at": json_time(item.effective_at)}
            for tier, item in downgrades.items()
        }
    return data
