"""Builders for cycle tests: scenarios and configuration files pointed at a simulator."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable
from pathlib import Path

from service.config import Settings, load_settings
from service.simulator import Scenario, parse_scenario

TOKEN_VARIABLE = "CYCLE_TEST_DO_TOKEN"

RULE_FIREWALL = "6f4d42b2-48de-4754-a3d3-74988d2a8e60"
RULE_BACKUPS = "0b7e4a5e-3f44-4d61-9f0e-8f3b1c6b2a10"
RULE_BUCKET = "c1a7d2e4-5b6f-4a8b-9c0d-1e2f3a4b5c6d"

_RULES = f"""
rules:
  - key: firewall
    uuid: {RULE_FIREWALL}
    name: All Firewall Ports Exposed to a Source
    severity: HIGH
    details: A firewall rule allows all ports.
    mitigation_steps: [{{step: 1, title: Narrow the rule, description: Allow single ports.}}]
  - key: backups
    uuid: {RULE_BACKUPS}
    name: Droplet Backups Not Enabled
    severity: MEDIUM
    details: The Droplet has no backups.
  - key: bucket
    uuid: {RULE_BUCKET}
    name: Spaces Bucket Allows Public Write Access
    severity: CRITICAL
    details: Anyone can write to the bucket.
resources:
  - {{urn: "do:droplet:1001", name: web-1, type: Droplet}}
  - {{urn: "do:droplet:1002", name: web-2, type: Droplet}}
  - {{urn: "do:space:uploads", name: uploads, type: Spaces Bucket}}
"""


def scenario(scans_yaml: str) -> Scenario:
    """A three-rule team whose scans are given as the YAML list under `scans:`."""
    text = (
        f"name: cycle-test\n{_RULES}\nscans:\n{textwrap.indent(textwrap.dedent(scans_yaml), '  ')}"
    )
    return parse_scenario(text, source="cycle test scenario")


LIFECYCLE_SCANS = """
- label: baseline
  findings: {firewall: ["do:droplet:1001"], backups: ["do:droplet:1002"]}
- label: new and escalated
  severity: {backups: HIGH}
  findings:
    firewall: ["do:droplet:1001"]
    backups: ["do:droplet:1002"]
    bucket: ["do:space:uploads"]
- label: resolved
  severity: {backups: HIGH}
  findings: {backups: ["do:droplet:1002"], bucket: ["do:space:uploads"]}
- label: reopened
  severity: {backups: HIGH}
  findings:
    firewall: ["do:droplet:1001"]
    backups: ["do:droplet:1002"]
    bucket: ["do:space:uploads"]
"""


async def wait_until(condition: Callable[[], bool], *, timeout_s: float = 30.0) -> None:
    """Wait until `condition()` is true; fail the test after `timeout_s` seconds."""
    async with asyncio.timeout(timeout_s):
        while not condition():  # noqa: ASYNC110 - the condition is a counter, not an event
            await asyncio.sleep(0.02)


def write_config(
    tmp_path: Path,
    *,
    api_url: str,
    database_url: str,
    poll: str = "{initial_interval_s: 0.05, max_interval_s: 0.2, timeout_s: 20}",
    extra_target: str = "",
    notifiers: str = "  stdout: {type: console, min_severity: LOW}",
) -> Path:
    """Write a one-target configuration file and return its path."""
    path = tmp_path / "cspm-watch.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            database_url: "{database_url}"
            api_url: {api_url}
            targets:
              - name: acme
                token_env: {TOKEN_VARIABLE}
                schedule: {{interval_s: 3600}}
                poll: {poll}
                alerts: {{min_severity: HIGH, notify_resolved: true, failure_alert_after: 2}}
            """
        )
        + textwrap.indent(extra_target, "    ")
        + "notifiers:\n"
        + notifiers
        + "\n"
    )
    return path


def settings_for(config_path: Path, token: str) -> Settings:
    return load_settings(config_path, {TOKEN_VARIABLE: token})
