"""Terminal safety of the command line's output: text from DigitalOcean or from users can carry
escape sequences and bidirectional overrides, which tables, fields and notes must not print.

The first tests call the printing functions directly. The others run commands against a
simulated team whose rule and resource names are hostile, and read from the API and from the
database that a cycle wrote.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.commands.output import print_fields, print_json, print_line, print_note, print_table
from service.runtime import run_once
from service.simulator import parse_scenario
from service.text import clean_line
from tests.support.openapi import OpenApiValidator
from tests.support.simulators import simulator_in_thread
from tests.test_cli_support import CliSetup, logging_restored, write_setup

# An OSC sequence that sets the window title, then "erase display", a C1 CSI (U+009B), a
# right-to-left override and an isolate. A tab and a line break would break a table's layout.
HOSTILE_NAME = "web\x1b]0;PWNED\x07\x1b[2J\x9b31m\u202eevil\u2066\ttab\nline"
# What a terminal shows instead: U+FFFD for each control, a space for the tab and line break.
SHOWN_NAME = "web\ufffd]0;PWNED\ufffd\ufffd[2J\ufffd31m\ufffdevil\ufffd tab line"
UNSAFE_CHARACTERS = ("\x1b", "\x07", "\x9b", "\u202e", "\u2066", "\t")

HOSTILE_RULE_UUID = "2b0f8f4e-6d0a-4f6e-9a49-3f1c2d7e5a01"
HOSTILE_URN = "do:droplet:500000002"

# YAML double-quoted escapes: \e is ESC, \a is BEL. The second scan adds the hostile resource,
# so the diff between the two lists it as new.
HOSTILE_SCENARIO = r"""
name: hostile-names
resources:
  - {urn: "do:droplet:500000001", name: web-1, type: Droplet}
  - {urn: "do:droplet:500000002", name: "web\e]0;PWNED\a\e[2J\x9b31m\u202eevil\u2066\ttab\nline",
     type: "Droplet\e[31m"}
rules:
  - key: hostile
    uuid: 2b0f8f4e-6d0a-4f6e-9a49-3f1c2d7e5a01
    name: "web\e]0;PWNED\a\e[2J\x9b31m\u202eevil\u2066\ttab\nline"
    severity: HIGH
scans:
  - findings:
      hostile: ["do:droplet:500000001"]
  - findings:
      hostile: ["do:droplet:500000001", "do:droplet:500000002"]
"""


def assert_terminal_safe(text: str) -> None:
    for character in UNSAFE_CHARACTERS:
        assert character not in text, f"{character!r} printed raw"


# the printing functions


def test_clean_line_replaces_controls_and_line_breaks() -> None:
    assert clean_line(HOSTILE_NAME) == SHOWN_NAME


def test_clean_line_keeps_spaces_and_ordinary_text() -> None:
    assert clean_line("  web  1 é 漢字 ") == "  web  1 é 漢字 "


def test_clean_line_turns_crlf_into_one_space() -> None:
    assert clean_line("a\r\nb\rc") == "a b\ufffdc"


def test_print_table_cells_and_title_terminal_safe(capsys: pytest.CaptureFixture[str]) -> None:
    print_table(["Name", "Type"], [(HOSTILE_NAME, "Droplet")], title=f"Scan {HOSTILE_NAME}")

    output = capsys.readouterr().out
    assert_terminal_safe(output)
    assert "web\ufffd]0;PWNED" in output
    assert "Droplet" in output


def test_print_table_empty_title_terminal_safe(capsys: pytest.CaptureFixture[str]) -> None:
    print_table(["Name"], [], title=f"Scan {HOSTILE_NAME}", empty="None.")

    output = capsys.readouterr().out
    assert_terminal_safe(output)
    assert f"Scan {SHOWN_NAME}" in output
    assert "None." in output


def test_print_table_title_not_read_as_markup(capsys: pytest.CaptureFixture[str]) -> None:
    # The row is wider than the title, so that the title stays on one line.
    print_table(["Name"], [("web-1 " * 10,)], title="Scan [/bold][red]x")

    assert "Scan [/bold][red]x" in capsys.readouterr().out


def test_print_table_list_cell_keeps_item_lines(capsys: pytest.CaptureFixture[str]) -> None:
    print_table(["Tier", "Resources"], [("basic", ["do:droplet:1", "do:droplet:2\x1b[2J"])])

    lines = capsys.readouterr().out.splitlines()
    assert any("do:droplet:1" in line for line in lines)
    assert any("do:droplet:2\ufffd[2J" in line for line in lines)


def test_print_fields_terminal_safe(capsys: pytest.CaptureFixture[str]) -> None:
    print_fields([("Scan ID", HOSTILE_NAME), ("Status", "COMPLETED")])

    output = capsys.readouterr().out
    assert_terminal_safe(output)
    assert output.splitlines() == [f"Scan ID  {SHOWN_NAME}", "Status   COMPLETED"]


def test_print_note_and_line_terminal_safe(capsys: pytest.CaptureFixture[str]) -> None:
    print_note(f"warning: {HOSTILE_NAME}")
    print_line(f"Deleted {HOSTILE_NAME}.")

    captured = capsys.readouterr()
    assert captured.err == f"warning: {SHOWN_NAME}\n"
    assert captured.out == f"Deleted {SHOWN_NAME}.\n"


def test_print_json_keeps_values_exact(capsys: pytest.CaptureFixture[str]) -> None:
    data = {"name": HOSTILE_NAME, "plain": "é 漢字 \u2028", "items": [HOSTILE_NAME, 1, None]}

    print_json(data)

    output = capsys.readouterr().out
    assert_terminal_safe(output)
    assert json.loads(output) == data
    assert "é 漢字" in output


# commands


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    with logging_restored():
        yield


@pytest.fixture
def hostile_setup(tmp_path: Path, openapi_validator: OpenApiValidator) -> Iterator[CliSetup]:
    scenario = parse_scenario(HOSTILE_SCENARIO, source="hostile-names")
    with simulator_in_thread(scenario, validator=openapi_validator) as simulator:
        yield write_setup(tmp_path, simulator.url, simulator.token)
    openapi_validator.assert_no_failures()


def run_two_cycles(setup: CliSetup) -> None:
    for _ in range(2):
        assert asyncio.run(run_once(setup.settings())) == 0


def test_findings_and_resources_from_api_terminal_safe(hostile_setup: CliSetup) -> None:
    hostile_setup.invoke_json("scans", "create", "--wait")
    scan = hostile_setup.invoke_json("scans", "create", "--wait")

    findings = hostile_setup.invoke("findings", scan["id"])
    resources = hostile_setup.invoke("resources", scan["id"], HOSTILE_RULE_UUID)

    assert findings.exit_code == 0, findings.stderr
    assert resources.exit_code == 0, resources.stderr
    assert_terminal_safe(findings.stdout)
    assert_terminal_safe(resources.stdout)
    assert "web\ufffd]0;PWNED" in findings.stdout
    assert "web\ufffd]0;PWNED" in resources.stdout
    assert "Droplet\ufffd[31m" in resources.stdout


def test_resources_json_keeps_names_exact(hostile_setup: CliSetup) -> None:
    hostile_setup.invoke_json("scans", "create", "--wait")
    scan = hostile_setup.invoke_json("scans", "create", "--wait")

    result = hostile_setup.invoke("resources", scan["id"], HOSTILE_RULE_UUID, "--output", "json")

    assert result.exit_code == 0, result.stderr
    assert_terminal_safe(result.stdout)
    names = {item["urn"]: item["name"] for item in json.loads(result.stdout)["resources"]}
    assert names[HOSTILE_URN] == HOSTILE_NAME


def test_suppressions_list_terminal_safe(hostile_setup: CliSetup) -> None:
    created = hostile_setup.invoke_json("suppressions", "create", HOSTILE_RULE_UUID, HOSTILE_URN)

    listed = hostile_setup.invoke("suppressions", "list")
    as_json = hostile_setup.invoke_json("suppressions", "list")

    assert listed.exit_code == 0, listed.stderr
    assert_terminal_safe(listed.stdout)
    assert created[0]["id"] in listed.stdout
    assert "web\ufffd]0;PWNED" in listed.stdout
    assert [item["rule_name"] for item in as_json] == [HOSTILE_NAME]


def test_stored_findings_resources_and_diff_terminal_safe(hostile_setup: CliSetup) -> None:
    run_two_cycles(hostile_setup)
    (newest, _) = hostile_setup.invoke_json("scans", "list", "--stored")

    outputs = [
        hostile_setup.invoke("findings", "--from", "db"),
        hostile_setup.invoke("resources", newest["scan_id"], HOSTILE_RULE_UUID, "--from", "db"),
        hostile_setup.invoke("diff"),
    ]

    for result in outputs:
        assert result.exit_code == 0, result.stderr
        assert_terminal_safe(result.stdout)
        assert "web\ufffd]0;PWNED" in result.stdout


def test_diff_json_keeps_names_exact(hostile_setup: CliSetup) -> None:
    run_two_cycles(hostile_setup)

    diff = hostile_setup.invoke_json("diff")

    (entry,) = diff["entries"]
    assert entry["kind"] == "new"
    assert entry["rule_name"] == HOSTILE_NAME
    assert entry["resource_name"] == HOSTILE_NAME
