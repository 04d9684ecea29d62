"""Click callbacks that check command-line values before any work starts.

This module imports only click and the standard library, so that `cspm-watch --help` stays fast.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import click

# The URN form that SecurityClient accepts: do:TYPE:ID.
_URN_PATTERN = re.compile(r"do:[a-z_]+:\S+")


def check_urns(
    _ctx: click.Context, param: click.Parameter, value: str | Sequence[str] | None
) -> str | Sequence[str] | None:
    """Click callback: reject any value that is not a resource URN such as do:droplet:123."""
    values = [value] if isinstance(value, str) else list(value or ())
    for urn in values:
        if not _URN_PATTERN.fullmatch(urn):
            raise click.BadParameter(
                f"{urn!r} is not a resource URN: expected do:TYPE:ID, for example "
                "do:droplet:412398741",
                param=param,
            )
    return value


def check_not_blank(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback: reject an empty or blank identifier."""
    if value is not None and not value.strip():
        raise click.BadParameter("it must not be empty", param=param)
    return value
