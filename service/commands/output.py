"""Printing results: rich tables for people, JSON for scripts.

Cells and titles are rich `Text` objects, so names chosen by users (a Droplet called
"[red]web") are printed as written and never read as rich markup. Every printed text goes
through `service.text.clean_line`, so that a name from DigitalOcean or a user cannot send
terminal escape sequences: control characters and bidirectional overrides show as U+FFFD, and
tabs and line breaks as spaces. JSON keeps every value exact.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from service.text import clean_line

# Width of tables written to a file or a pipe, enough for a row of UUIDs, names and times.
PIPED_TABLE_WIDTH = 200

# C1 control characters and bidirectional controls, which json.dumps leaves as they are when
# ensure_ascii is off. They can occur only inside JSON strings, where a \uXXXX escape stands
# for the same character.
_JSON_UNSAFE_CHARACTERS = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class OutputFormat(enum.Enum):
    """Output format of a command: a rich table or JSON."""

    TABLE = "table"
    JSON = "json"


def format_time(value: datetime | None) -> str:
    """Format a UTC time as ISO 8601 with seconds and a Z suffix; "" for None."""
    if value is None:
        return ""
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def json_time(value: datetime | None) -> str | None:
    """Format a time for JSON output: ISO 8601 text, or null."""
    return format_time(value) or None


def print_json(data: Any) -> None:
    """Print `data` as indented JSON on standard output.

    Non-ASCII text stays readable, except control and bidirectional characters, which are
    written as \\uXXXX escapes: a JSON parser reads the same values either way.
    """
    text = json.dumps(data, indent=2, ensure_ascii=False)
    click.echo(_JSON_UNSAFE_CHARACTERS.sub(_json_escape, text))


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def print_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[object]],
    *,
    title: str | None = None,
    empty: str = "Nothing to show.",
) -> None:
    """Print a table on standard output, or the `empty` sentence when there are no rows."""
    table = Table(
        title=Text(clean_line(title)) if title else None,
        title_justify="left",
        title_style="bold",
    )
    for header in headers:
        # Fold rather than cut long values, so that every character of an id stays printed.
        table.add_column(header, overflow="fold")
    for row in rows:
        table.add_row(*(Text(_cell(value)) for value in row))
    if not table.rows:
        if title:
            click.secho(clean_line(title), bold=True)
        click.echo(clean_line(empty))
        return
    _stdout().print(table)


def print_fields(fields: Sequence[tuple[str, object]]) -> None:
    """Print one record as aligned "key  value" lines."""
    width = max(len(key) for key, _ in fields)
    for key, value in fields:
        click.echo(f"{key:<{width}}  {_cell(value)}")


def print_line(text: str) -> None:
    """Print one line of the result on standard output."""
    click.echo(clean_line(text))


def print_note(text: str) -> None:
    """Print a remark that is not part of the result, as one line on standard error."""
    click.echo(clean_line(text), err=True)


def _cell(value: object) -> str:
    """Return the text of a table cell or field; the items of a list go on separate lines."""
    if isinstance(value, list | tuple):
        return "\n".join(_cell(item) for item in value)
    return clean_line(_plain_text(value))


def _plain_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _stdout() -> Console:
    # A new console per table, because rich detects the terminal and its colors when a console
    # is created, and click's test runner replaces sys.stdout for each call.
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal:
        # Off a terminal rich assumes 80 columns, which would fold every UUID column. Files
        # and pipes take long lines, so each row stays on one line.
        console.width = PIPED_TABLE_WIDTH
    return console
