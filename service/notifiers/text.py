"""Text handling for messages: cleaning, Slack mrkdwn escaping, measuring and cutting.

Text from DigitalOcean or from users (rule names, details, resource names) goes through
`clean_text` and then `escape_mrkdwn`, so that it can neither mention anyone, nor hide a link,
nor change the order in which it is displayed. Lengths are measured in UTF-16 code units,
which are never fewer than the characters, so a limit that Slack counts in characters holds
with room to spare for emoji and other characters outside the Basic Multilingual Plane.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from service.text import clean_text, single_line

TRUNCATION_MARKER = "… (truncated)"

# Slack gives `&`, `<` and `>` control meaning in mrkdwn (`<@U123>`, `<!channel>`,
# `<https://example.com|label>`), and its formatting guide requires these three entities in
# their place (https://api.slack.com/reference/surfaces/formatting#escaping).
_MRKDWN_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_MRKDWN_SPECIAL = re.compile("[&<>]")

_WORD_BOUNDARY = re.compile(r"\s")

_Measure = Callable[[str], int]

# A cut at a word boundary may give back at most this share of the room, so that one very
# long word does not empty the text.
_MAX_WORD_BOUNDARY_LOSS = 0.2


def escape_mrkdwn(text: str) -> str:
    """Escape `&`, `<` and `>` so Slack shows them as text, after `clean_text`."""
    return _MRKDWN_SPECIAL.sub(lambda match: _MRKDWN_ESCAPES[match.group()], clean_text(text))


def text_length(text: str) -> int:
    """Length in UTF-16 code units, the unit this module measures every limit in."""
    return len(text.encode("utf-16-le")) // 2


def fit_mrkdwn(text: str, max_length: int, *, one_line: bool = False) -> str:
    """Escape `text` for mrkdwn and cut it to at most `max_length` after escaping.

    A cut ends at a word boundary when one is near, never inside an entity such as `&amp;`,
    and ends with `TRUNCATION_MARKER`.
    """
    source = single_line(text) if one_line else clean_text(text)
    escaped = escape_mrkdwn(source)
    if text_length(escaped) <= max_length:
        return escaped
    return escape_mrkdwn(_cut(source, max_length, escaped_length=_escaped_length)) + (
        TRUNCATION_MARKER
    )


def fit_plain(text: str, max_length: int, *, one_line: bool = True) -> str:
    """Clean `text` and cut it to at most `max_length`, for output that is not mrkdwn."""
    source = single_line(text) if one_line else clean_text(text)
    if text_length(source) <= max_length:
        return source
    return _cut(source, max_length, escaped_length=text_length) + TRUNCATION_MARKER


def _cut(source: str, max_length: int, *, escaped_length: _Measure) -> str:
    room = max_length - text_length(TRUNCATION_MARKER)
    if room <= 0:
        raise ValueError(f"max_length {max_length} leaves no room for the truncation marker")
    end = _longest_prefix(source, room, escaped_length)
    boundary = _last_word_boundary(source, end, earliest=int(end * (1 - _MAX_WORD_BOUNDARY_LOSS)))
    if boundary is not None:
        end = boundary
    return source[:end].rstrip()


def _longest_prefix(source: str, room: int, measure: _Measure) -> int:
    """The largest `end` such that `source[:end]` measures at most `room` once escaped."""
    used = 0
    for index, character in enumerate(source):
        used += measure(character)
        if used > room:
            return index
    return len(source)


def _last_word_boundary(source: str, end: int, *, earliest: int) -> int | None:
    """The index of the last whitespace at or before `end` and after `earliest`, if any."""
    if end < len(source) and _WORD_BOUNDARY.match(source[end]):
        return end
    for index in range(end - 1, max(earliest, 0), -1):
        if _WORD_BOUNDARY.match(source[index]):
            return index
    return None


def _escaped_length(character: str) -> int:
    return text_length(_MRKDWN_ESCAPES.get(character, character))
