"""`cspm-watch suppressions list|create|delete` and `cspm-watch false-positive`.

Both act at DigitalOcean, not in the local configuration: a suppression mutes one rule on
chosen resources, and a false positive excludes a resource from every future scan. Local
mutes live in the configuration file instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.commands.common import CommandError, open_client, pick_target, warn_incomplete
from service.commands.output import OutputFormat, print_json, print_line, print_table
from service.commands.scans import EXIT_OK
from service.config import Settings
from service.digitalocean.errors import NotFoundError
from service.digitalocean.models import Suppression


async def list_suppressions(
    settings: Settings, target_name: str | None, output: OutputFormat
) -> int:
    """Print every suppression of the team."""
    target = pick_target(settings, target_name)
    async with open_client(settings, target) as client:
        team_settings = await client.get_settings()
    if not team_settings.suppressions_complete:
        warn_incomplete("the list of suppressions", team_settings.problems)
    _print_suppressions(
        team_settings.suppressions,
        output,
        title=f"Suppressions of target {target.name}",
        empty="The team has no suppressions.",
    )
    return EXIT_OK


async def create_suppression(
    settings: Settings,
    target_name: str | None,
    rule_uuid: str,
    resource_urns: Sequence[str],
    output: OutputFormat,
) -> int:
    """Suppress a rule on the given resources and print the suppressions created."""
    target = pick_target(settings, target_name)
    async with open_client(settings, target) as client:
        created = await client.create_suppression(rule_uuid, resource_urns)
    _print_suppressions(
        created,
        output,
        title="Suppressions created",
        empty="DigitalOcean accepted the request but returned no suppression.",
    )
    return EXIT_OK


async def delete_suppression(
    settings: Settings, target_name: str | None, suppression_id: str
) -> int:
    """Delete a suppression by its id.

    Raise CommandError when DigitalOcean has no suppression with this id.
    """
    target = pick_target(settings, target_name)
    async with open_client(settings, target) as client:
        try:
            await client.delete_suppression(suppression_id)
        except NotFoundError as error:
            raise CommandError(_not_found_message(suppression_id, target_name, error)) from None
    print_line(f"Deleted suppression {suppression_id}.")
    return EXIT_OK


def _not_found_message(suppression_id: str, target_name: str | None, error: NotFoundError) -> str:
    details = [f"HTTP {error.status}"]
    if error.message:
        details.append(repr(error.message))
    if error.request_id:
        details.append(f"request id {error.request_id}")
    target_option = f" --target {target_name}" if target_name is not None else ""
    return (
        f"suppression {suppression_id!r} was not found at DigitalOcean ({', '.join(details)}): "
        f"check the id with `cspm-watch suppressions list{target_option}`"
    )


async def mark_false_positive(
    settings: Settings, target_name: str | None, resource_urn: str
) -> int:
    """Exclude a resource from the team's future scans."""
    target = pick_target(settings, target_name)
    async with open_client(settings, target) as client:
        await client.create_false_positive(resource_urn)
    print_line(f"Excluded {resource_urn} from future scans of target {target.name}.")
    return EXIT_OK


def _print_suppressions(
    suppressions: Sequence[Suppression], output: OutputFormat, *, title: str, empty: str
) -> None:
    if output is OutputFormat.JSON:
        print_json([_suppression_json(item) for item in suppressions])
        return
    print_table(
        ["ID", "Rule ID", "Rule Name", "Resource ID", "Resource Type"],
        [
            (item.id, item.rule_uuid, item.rule_name, item.resource_id, item.resource_type)
            for item in suppressions
        ],
        title=title,
        empty=empty,
    )


def _suppression_json(suppression: Suppression) -> dict[str, Any]:
    return {
        "id": suppression.id,
        "rule_uuid": suppression.rule_uuid,
        "rule_name": suppression.rule_name,
        "resource_id": suppression.resource_id,
        "resource_type": suppression.resource_type,
    }
