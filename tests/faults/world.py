"""The world a fault case runs in: the simulated team, the configuration file pointing the
service at the simulator, the Slack fake and the webhook sink, and the end state read back from
the database afterwards."""

from __future__ import annotations

import textwrap
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from service.simulator import Scenario
from service.storage import (
    DeliveryRecord,
    FindingStateRecord,
    LeaseRecord,
    ScanRecord,
    create_engine,
    create_sessionmaker,
)
from tests.scanning.support import RULE_BACKUPS, RULE_BUCKET, RULE_FIREWALL, scenario

TARGET = "acme"
TOKEN_VARIABLE = "FAULTS_DO_TOKEN"
SLACK_TOKEN_VARIABLE = "FAULTS_SLACK_TOKEN"
WEBHOOK_SECRET_VARIABLE = "FAULTS_WEBHOOK_SECRET"

SLACK_TOKEN = "xoxb-1111111111-2222222222-FaultSuiteTokenValue"
SLACK_CHANNEL = "#security"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

# One scan plan, repeated for every later scan: the scan stays running for a number of polls,
# then reports two HIGH findings on droplets, one CRITICAL on a bucket and one MEDIUM.
ONE_SCAN = """
- in_progress_polls: {in_progress_polls}
  findings:
    firewall: ["do:droplet:1001", "do:droplet:1002"]
    bucket: ["do:space:uploads"]
    backups: ["do:droplet:1002"]
"""

# Open fingerprints after the scan above: (rule_uuid, resource URN) -> severity.
ONE_SCAN_STATES = {
    (RULE_FIREWALL, "do:droplet:1001"): ("open", "HIGH"),
    (RULE_FIREWALL, "do:droplet:1002"): ("open", "HIGH"),
    (RULE_BUCKET, "do:space:uploads"): ("open", "CRITICAL"),
    (RULE_BACKUPS, "do:droplet:1002"): ("open", "MEDIUM"),
}


def one_scan_scenario(*, in_progress_polls: int = 2) -> Scenario:
    return scenario(ONE_SCAN.format(in_progress_polls=in_progress_polls))


@dataclass(frozen=True)
class Receivers:
    """Where the service sends alerts: the Slack fake's API URL and the webhook sink's URL."""

    slack_api_url: str
    webhook_url: str


def notifiers_yaml(receivers: Receivers) -> str:
    return textwrap.dedent(
        f"""\
        notifiers:
          security:
            type: slack
            token_env: {SLACK_TOKEN_VARIABLE}
            channel: "{SLACK_CHANNEL}"
            api_url: {receivers.slack_api_url}
          soc:
            type: webhook
            url: {receivers.webhook_url}
            secret_env: {WEBHOOK_SECRET_VARIABLE}
        """
    )


def write_config(
    directory: Path,
    *,
    api_url: str,
    database_url: str,
    receivers: Receivers,
    schedule: str = "{interval_s: 3600}",
    poll: str = "{initial_interval_s: 0.05, max_interval_s: 0.2, timeout_s: 30}",
    on_first_scan: str = "alert",
    extra: str = "",
) -> Path:
    """Write a one-target configuration with a Slack and a webhook notifier; return its path."""
    path = directory / "cspm-watch.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            database_url: "{database_url}"
            api_url: {api_url}
            listen: 127.0.0.1:0
            dispatch: {{interval_s: 1}}
            targets:
              - name: {TARGET}
                token_env: {TOKEN_VARIABLE}
                schedule: {schedule}
                poll: {poll}
                alerts:
                  min_severity: HIGH
                  on_first_scan: {on_first_scan}
                  notify_resolved: true
                  failure_alert_after: 100
            """
        )
        + notifiers_yaml(receivers)
        + extra
    )
    return path


def service_environment(api_token: str) -> dict[str, str]:
    """The secrets the configuration names, as variables for the service process."""
    return {
        TOKEN_VARIABLE: api_token,
        SLACK_TOKEN_VARIABLE: SLACK_TOKEN,
        WEBHOOK_SECRET_VARIABLE: WEBHOOK_SECRET,
    }


@dataclass(frozen=True)
class ScanRow:
    scan_id: str
    status: str
    collection_complete: bool
    states_updated: bool
    requested_at: datetime
    error: str | None
    problems: list[str]


@dataclass(frozen=True)
class DeliveryRow:
    notifier: str
    kind: str
    status: str
    attempts: int
    webhook_id: str
    payload: str
    created_at: datetime


@dataclass(frozen=True)
class EndState:
    """The database's content after a case: scans, finding states and the outbox."""

    scans: list[ScanRow]
    states: dict[tuple[str, str], tuple[str, str]]
    deliveries: list[DeliveryRow]

    def deliveries_by_status(self) -> Counter[str]:
        return Counter(row.status for row in self.deliveries)


async def read_end_state(database_url: str) -> EndState:
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine)() as session:
            scans = (await session.scalars(select(ScanRecord).order_by(ScanRecord.id))).all()
            states = (await session.scalars(select(FindingStateRecord))).all()
            deliveries = (
                await session.scalars(select(DeliveryRecord).order_by(DeliveryRecord.id))
            ).all()
    finally:
        await engine.dispose()
    return EndState(
        scans=[
            ScanRow(
                scan.scan_id,
                scan.status,
                scan.collection_complete,
                scan.states_updated,
                scan.requested_at,
                scan.error,
                list(scan.collection_problems),
            )
            for scan in scans
        ],
        states={
            (state.rule_uuid, state.resource_urn): (state.status, state.severity)
            for state in states
        },
        deliveries=[
            DeliveryRow(
                row.notifier,
                row.kind,
                row.status,
                row.attempts,
                row.webhook_id,
                row.payload,
                row.created_at,
            )
            for row in deliveries
        ],
    )


async def expire_leases_and_claims(database_url: str) -> None:
    """Make the lease and the delivery claims of a killed process expire now.

    A SIGKILLed process leaves its lease (120 s) and the claim of a delivery it was sending
    (300 s) behind; both end on their own. Moving their expiry to the past stands for waiting
    that long, so a restart in the test behaves as a restart after that wait would.
    """
    past = datetime.now(UTC) - timedelta(seconds=1)
    engine = create_engine(database_url)
    try:
        async with create_sessionmaker(engine).begin() as session:
            await session.execute(update(LeaseRecord).values(expires_at=past))
            await session.execute(
                update(DeliveryRecord)
                .where(DeliveryRecord.status == "sending")
                .values(next_attempt_at=past)
            )
    finally:
        await engine.dispose()


def webhook_alerts(bodies: list[Any]) -> Counter[tuple[str, str, str]]:
    """Count (reason, rule_uuid, resource URN) over the findings of webhook bodies."""
    counted: Counter[tuple[str, str, str]] = Counter()
    for body in bodies:
        for finding in body.get("data", {}).get("findings", []):
            urns = [resource["urn"] for resource in finding.get("resources", [])] or [""]
            for urn in urns:
                counted[(finding["reason"], finding["rule_uuid"], urn)] += 1
    return counted
