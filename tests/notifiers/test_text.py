"""Text handling: mrkdwn escaping, measuring in UTF-16 units, cutting at word boundaries."""

from __future__ import annotations

import pytest

from service.notifiers.text import (
    TRUNCATION_MARKER,
    escape_mrkdwn,
    fit_mrkdwn,
    fit_plain,
    text_length,
)
from service.text import clean_text
from tests.notifiers.factories import HOSTILE_LONG, unsafe_slack_text


def test_escape_mrkdwn_replaces_the_three_control_characters() -> None:
    assert escape_mrkdwn("<!here> & <@U1|x>") == "&lt;!here&gt; &amp; &lt;@U1|x&gt;"


def test_escape_mrkdwn_escapes_existing_entities_again() -> None:
    assert escape_mrkdwn("&lt;") == "&amp;lt;"


def test_clean_text_replaces_controls_and_bidirectional_overrides() -> None:
    assert clean_text("a\x1b[31mb\u202ec\td\r\ne\x00") == "a\ufffd[31mb\ufffdc d\ne\ufffd"


def test_text_length_counts_utf16_units() -> None:
    assert text_length("a🔥é") == 4


def test_fit_mrkdwn_keeps_short_text_whole() -> None:
    assert fit_mrkdwn("a < b", 20) == "a &lt; b"


def test_fit_mrkdwn_cuts_at_word_boundary() -> None:
    fitted = fit_mrkdwn("alpha beta gamma delta epsilon", 25)

    assert fitted == f"alpha beta{TRUNCATION_MARKER}"
    assert text_length(fitted) <= 25


def test_fit_mrkdwn_never_splits_an_entity() -> None:
    fitted = fit_mrkdwn("&" * 100, 40)

    assert fitted.removesuffix(TRUNCATION_MARKER) == "&amp;" * 5
    assert text_length(fitted) <= 40


def test_fit_mrkdwn_cuts_a_long_word_hard() -> None:
    fitted = fit_mrkdwn("x" * 100, 50)

    assert fitted == "x" * (50 - text_length(TRUNCATION_MARKER)) + TRUNCATION_MARKER


@pytest.mark.parametrize("limit", [14, 20, 150, 3000])
@pytest.mark.parametrize("text", HOSTILE_LONG, ids=lambda text: repr(text[:12]))
def test_fit_mrkdwn_output_is_safe_and_within_limit(text: str, limit: int) -> None:
    fitted = fit_mrkdwn(text, limit)

    assert text_length(fitted) <= limit
    assert unsafe_slack_text(fitted) is None


def test_fit_mrkdwn_one_line_folds_line_breaks() -> None:
    assert fit_mrkdwn("a\nb\n\nc", 20, one_line=True) == "a b c"


def test_fit_plain_does_not_escape() -> None:
    assert fit_plain("a & b", 20) == "a & b"


def test_fit_without_marker_room_raises() -> None:
    with pytest.raises(ValueError, match="no room for the truncation marker"):
        fit_mrkdwn("x" * 100, 5)
