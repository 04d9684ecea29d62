"""Scenario files: loading, the built-in scenario and validation errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.digitalocean.models import Severity
from service.simulator import (
    ScanOutcome,
    ScenarioError,
    default_scenario,
    load_scenario,
    parse_scenario,
)

SCENARIO_FOLDER = Path(__file__).parents[2] / "config" / "scenarios"

VALID = """
name: tiny
resources:
  - {urn: "do:droplet:1", name: web-1, type: Droplet}
  - {urn: "do:space:bucket-a", name: bucket-a}
rules:
  - key: ssh-open
    uuid: 2b0f8f4e-6d0a-4f6e-9a49-3f1c2d7e5a01
    name: SSH Open to the Internet
    severity: HIGH
scans:
  - findings:
      ssh-open: ["do:droplet:1"]
"""


def broken(old: str, new: str) -> str:
    assert old in VALID
    return VALID.replace(old, new)


def test_default_scenario_has_documented_size() -> None:
    scenario = default_scenario()

    assert 12 <= len(scenario.rules) <= 20
    assert 24 <= len(scenario.resources) <= 60
    assert len(scenario.scans) >= 3


def test_default_scenario_rules_have_full_texts() -> None:
    for rule in default_scenario().rules:
        assert rule.details, rule.name
        assert rule.business_impact, rule.name
        assert rule.technical_details, rule.name
        assert rule.mitigation_steps, rule.name
        assert [step.step for step in rule.mitigation_steps] == list(
            range(1, len(rule.mitigation_steps) + 1)
        )


def test_default_scenario_names_digitalocean_examples() -> None:
    names = {rule.name for rule in default_scenario().rules}

    assert "All Firewall Ports Exposed to a Source" in names
    assert "Droplet Backups Not Enabled" in names
    severities = {rule.name: rule.severity for rule in default_scenario().rules}
    assert severities["Spaces Bucket Allows Public Write Access"] is Severity.CRITICAL


@pytest.mark.parametrize("path", sorted(SCENARIO_FOLDER.glob("*.yaml")), ids=lambda p: p.name)
def test_example_scenario_files_load(path: Path) -> None:
    scenario = load_scenario(path)

    assert scenario.name == path.stem
    assert scenario.scans


def test_parse_scenario_reads_minimal_file() -> None:
    scenario = parse_scenario(VALID)

    assert scenario.name == "tiny"
    assert scenario.resources_by_urn["do:space:bucket-a"].type == "Spaces Bucket"
    rule = scenario.rules[0]
    assert rule.key == "ssh-open"
    assert rule.type == "CSPM"
    assert scenario.scans[0].findings == {rule.uuid: ("do:droplet:1",)}
    assert scenario.scans[0].outcome is ScanOutcome.COMPLETED


def test_scan_plan_repeats_last_entry() -> None:
    scenario = default_scenario()

    assert scenario.scan_plan(1) is scenario.scans[0]
    assert scenario.scan_plan(len(scenario.scans) + 5) is scenario.scans[-1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            broken("name: tiny", "name: tiny\ncolour: blue"),
            "colour: Extra inputs are not permitted",
        ),
        (broken("severity: HIGH", "severity: SEVERE"), "rules[0].severity: Input should be"),
        (
            broken("uuid: 2b0f8f4e-6d0a-4f6e-9a49-3f1c2d7e5a01", "uuid: rule-1"),
            "rules[0].uuid: Input should be a valid UUID",
        ),
        (
            broken('urn: "do:droplet:1"', 'urn: "droplet-1"'),
            "resources[0].urn: String should match",
        ),
        (broken("ssh-open: [", "ssh-closed: ["), "scans[0].findings.ssh-closed: unknown rule"),
        (
            broken('["do:droplet:1"]', '["do:droplet:2"]'),
            "scans[0].findings.ssh-open[0]: unknown resource 'do:droplet:2'",
        ),
        (
            broken('["do:droplet:1"]', '["do:droplet:1", "do:droplet:1"]'),
            "scans[0].findings.ssh-open[1]: 'do:droplet:1' is listed twice",
        ),
        (
            broken("name: bucket-a}", 'name: bucket-a}\n  - {urn: "do:droplet:1", name: again}'),
            "resources[2].urn: duplicate URN 'do:droplet:1'",
        ),
        (broken("  - findings:", "  - outcome: DONE\n    findings:"), "scans[0].outcome: Input"),
        (
            broken("  - findings:", "  - in_progress_polls: -1\n    findings:"),
            "scans[0].in_progress_polls: Input should be greater than or equal to 0",
        ),
        (
            broken('scans:\n  - findings:\n      ssh-open: ["do:droplet:1"]\n', "scans: []\n"),
            "scans: the list is empty",
        ),
        ("name: x\nscans: [\n", "invalid YAML"),
        ("- just a list", "expected a mapping"),
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        (
            "name: x\ngenerate: {seed: 1, rules: 100000000, resources: 1000000000}\n",
            "generate.rules: Input should be less than or equal to 5000",
        ),
    ],
)
def test_parse_scenario_error_names_key(text: str, expected: str) -> None:
    with pytest.raises(ScenarioError) as raised:
        parse_scenario(text, source="test.yaml")

    assert expected in str(raised.value)
    assert str(raised.value).startswith("test.yaml: ")


def test_parse_scenario_reports_every_problem() -> None:
    text = broken("ssh-open: [", "unknown-a: [").replace("severity: HIGH", "severity: HIGH\n")
    text += "  - findings:\n      unknown-b: []\n"

    with pytest.raises(ScenarioError) as raised:
        parse_scenario(text)

    assert "unknown-a" in str(raised.value)
    assert "unknown-b" in str(raised.value)


def test_load_scenario_missing_file_names_path(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"

    with pytest.raises(ScenarioError) as raised:
        load_scenario(missing)

    assert str(missing) in str(raised.value)


def test_parse_scenario_generate_builds_team() -> None:
    scenario = parse_scenario("name: big\ngenerate: {seed: 3, rules: 20, resources: 500}\n")

    assert scenario.name == "big"
    assert len(scenario.rules) == 20
    assert len(scenario.resources) == 500
    assert len(scenario.scans) == 3


def test_parse_scenario_generate_with_lists_is_rejected() -> None:
    text = VALID + "generate: {seed: 3, rules: 20, resources: 500}\n"

    with pytest.raises(ScenarioError, match="generate cannot be combined"):
        parse_scenario(text)
