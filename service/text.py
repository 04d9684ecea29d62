"""Cleaning of untrusted text before it reaches a terminal, a chat message or a log.

Rule names, resource names and other text from DigitalOcean or from users may contain control
characters. Printed raw, an escape sequence such as "\\x1b]0;title\\x07" or "\\x1b[2J" retitles or
clears the reader's terminal, and a bidirectional override makes text display in another order
than it is stored ("Trojan Source").
"""

from __future__ import annotations

import re

REPLACEMENT_CHARACTER = "\ufffd"

# C0 and C1 control characters other than newline and tab, and the Unicode bidirectional
# controls that can make text display in another order than it is stored.
_UNSAFE_CHARACTERS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def clean_text(text: str) -> str:
    """Replace control and bidirectional-override characters with U+FFFD, tabs with spaces.

    Line breaks stay: CRLF becomes LF, and a lone CR is replaced like any other control.
    """
    return _UNSAFE_CHARACTERS.sub(
        REPLACEMENT_CHARACTER, text.replace("\t", " ").replace("\r\n", "\n")
    )


def clean_line(text: str) -> str:
    """Clean `text` like `clean_text` and replace each line break with one space.

    Unlike `single_line`, runs of spaces stay, so a name shows as it is stored.
    """
    return clean_text(text).replace("\n", " ")


def single_line(text: str) -> str:
    """Clean `text` and fold each run of whitespace, line breaks included, into one space."""
    return " ".join(clean_text(text).split())
