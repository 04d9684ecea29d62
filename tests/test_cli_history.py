"""The commands that read the stored history: stored scans, findings and resources from the
database, diff, and the deliveries outbox.

Cycles run through `service.runtime.run_once` against the simulator's built-in scenario, whose
first scan is a baseline and whose second brings new and escalated findings. The commands then
read the SQLite file those cycles wrote.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from service.runtime import run_once
from service.simulator import Simulator
from service.storage import create_engine, create_sessionmaker, prune_scan_details
from tests.support.simulators import serve_in_thread
from tests.support.webhook_receiver import ScriptedAnswer, WebhookReceiver, run_webhook_receiver
from tests.test_cli_support import (
    WEBHOOK_SECRET,
    WEBHOOK_SECRET_VARIABLE,
    CliSetup,
    logging_restored,
    write_setup,
)

FIREWALL_RULE_UUID = "6f4d42b2-48de-4754-a3d3-74988d2a8e60"
NO_FIREWALL_RULE_NAME = "Droplet Not Protected by a Cloud Firewall"
# A MEDIUM rule of the built-in scenario.
BACKUPS_RULE_UUID = "67c7445f-bbd9-412f-bf88-84ce757533e0"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    with logging_restored():
        yield


@pytest.fixture
def setup(tmp_path: Path, threaded_simulator: Simulator) -> CliSetup:
    return write_setup(tmp_path, threaded_simulator.url, threaded_simulator.token)


def run_cycle(setup: CliSetup, *, expected_exit_code: int = 0) -> None:
    """Run one cycle of every target, which stores a scan and enqueues its deliveries."""
    assert asyncio.run(run_once(setup.settings())) == expected_exit_code


def stored_scan_ids(setup: CliSetup) -> list[str]:
    """The stored scans' ids, oldest first."""
    return [scan["scan_id"] for scan in reversed(setup.invoke_json("scans", "list", "--stored"))]


def prune_every_scan(setup: CliSetup) -> None:
    async def prune() -> None:
        engine = create_engine(setup.settings().database_url)
        try:
            async with create_sessionmaker(engine).begin() as session:
                await prune_scan_details(session, older_than=datetime.now(UTC) + timedelta(days=1))
        finally:
            await engine.dispose()

    asyncio.run(prune())


# scans list --stored


def test_scans_list_stored_shows_counts_newest_first(setup: CliSetup) -> None:
    run_cycle(setup)
    run_cycle(setup)

    stored = setup.invoke_json("scans", "list", "--stored")
    api_ids = [scan["id"] for scan in setup.invoke_json("scans", "list")]

    assert len(stored) == 2
    assert {scan["scan_id"] for scan in stored} == set(api_ids)
    newest, oldest = stored
    assert newest["requested_at"] >= oldest["requested_at"]
    assert all(scan["status"] == "COMPLETED" for scan in stored)
    assert all(scan["collection_complete"] for scan in stored)
    assert oldest["new_count"] == oldest["resources_count"]
    assert newest["escalated_count"] == 2
    assert newest["findings_count"] > oldest["findings_count"]


def test_scans_list_stored_limit_keeps_newest(setup: CliSetup) -> None:
    run_cycle(setup)
    run_cycle(setup)

    everything = setup.invoke_json("scans", "list", "--stored")
    limited = setup.invoke_json("scans", "list", "--stored", "--limit", "1")

    assert limited == everything[:1]


# findings and resources from the database


def test_findings_from_db_match_api(setup: CliSetup) -> None:
    run_cycle(setup)
    (scan_id,) = stored_scan_ids(setup)

    from_db = setup.invoke_json("findings", scan_id, "--from", "db")
    from_api = setup.invoke_json("findings", scan_id, "--from", "api")
    latest_from_db = setup.invoke_json("findings", "--latest", "--from", "db")

    assert from_db["source"] == "db"
    assert from_db["findings"] == from_api["findings"]
    assert from_db["status"] == from_api["status"] == "COMPLETED"
    assert latest_from_db == from_db


def test_findings_from_db_severity_filter(setup: CliSetup) -> None:
    run_cycle(setup)

    medium = setup.invoke_json("findings", "--from", "db", "--severity", "MEDIUM")

    assert medium["findings"]
    assert {finding["severity"] for finding in medium["findings"]} == {"MEDIUM"}


def test_findings_from_db_unknown_scan_explains(setup: CliSetup) -> None:
    run_cycle(setup)

    result = setup.invoke("findings", "no-such-scan", "--from", "db")

    assert result.exit_code == 1
    assert "scan no-such-scan is not stored" in result.stderr
    assert "scans list --stored" in result.stderr


def test_findings_from_db_pruned_scan_explains(setup: CliSetup) -> None:
    run_cycle(setup)
    prune_every_scan(setup)

    result = setup.invoke("findings", "--from", "db")

    assert result.exit_code == 1
    assert "were deleted on" in result.stderr
    assert "retention.scan_details_days" in result.stderr


def test_resources_from_db_match_api(setup: CliSetup) -> None:
    run_cycle(setup)
    (scan_id,) = stored_scan_ids(setup)

    from_db = setup.invoke_json("resources", scan_id, FIREWALL_RULE_UUID, "--from", "db")
    from_api = setup.invoke_json("resources", scan_id, FIREWALL_RULE_UUID, "--from", "api")

    assert from_db["resources"]
    assert from_db["resources"] == from_api["resources"]
    assert from_db["complete"] is True


def test_resources_from_db_not_fetched_explains(
    tmp_path: Path, threaded_simulator: Simulator
) -> None:
    setup = write_setup(
        tmp_path,
        threaded_simulator.url,
        threaded_simulator.token,
        resource_detail_min_severity="HIGH",
    )
    run_cycle(setup)
    (scan_id,) = stored_scan_ids(setup)

    result = setup.invoke("resources", scan_id, BACKUPS_RULE_UUID, "--from", "db")

    assert result.exit_code == 1
    assert "resource_detail_min_severity" in result.stderr
    assert "--from api" in result.stderr


def test_database_file_missing_exits_3(setup: CliSetup) -> None:
    result = setup.invoke("findings", "--from", "db")

    assert result.exit_code == 3
    assert "does not exist" in result.stderr
    assert not setup.database_path.exists()


def test_database_without_tables_exits_3(setup: CliSetup) -> None:
    setup.database_path.touch()

    result = setup.invoke("scans", "list", "--stored")

    assert result.exit_code == 3
    assert "has no cspm-watch tables" in result.stderr
    assert "db upgrade" in result.stderr


# diff


def test_diff_after_two_cycles_reports_new_and_escalated(setup: CliSetup) -> None:
    run_cycle(setup)
    run_cycle(setup)
    old_id, new_id = stored_scan_ids(setup)

    diff = setup.invoke_json("diff")

    assert (diff["old_scan_id"], diff["new_scan_id"]) == (old_id, new_id)
    assert diff["counts"]["new"] == 7
    assert diff["counts"]["escalated"] == 2
    assert diff["counts"]["reopened"] == 0
    assert diff["counts"]["resolved"] == 0
    assert diff["counts"]["unchanged"] > 0
    escalated = [entry for entry in diff["entries"] if entry["kind"] == "escalated"]
    assert {entry["rule_name"] for entry in escalated} == {NO_FIREWALL_RULE_NAME}
    assert {(entry["severity_before"], entry["severity"]) for entry in escalated} == {
        ("MEDIUM", "HIGH")
    }
    new_urns = {entry["resource_urn"] for entry in diff["entries"] if entry["kind"] == "new"}
    assert "do:space:acme-user-uploads" in new_urns
    assert all(entry["kind"] != "unchanged" for entry in diff["entries"])


def test_diff_named_scans_in_reverse_shows_resolved(setup: CliSetup) -> None:
    run_cycle(setup)
    run_cycle(setup)
    old_id, new_id = stored_scan_ids(setup)

    forward = setup.invoke_json("diff", old_id, new_id)
    backward = setup.invoke_json("diff", new_id, old_id)

    assert forward == setup.invoke_json("diff")
    assert backward["counts"]["resolved"] == forward["counts"]["new"]
    assert backward["counts"]["new"] == 0


def test_diff_table_lists_changes(setup: CliSetup) -> None:
    run_cycle(setup)
    run_cycle(setup)

    result = setup.invoke("diff")

    assert result.exit_code == 0
    assert "7 new, 0 reopened, 2 escalated, 0 resolved" in result.stdout
    assert "HIGH (was MEDIUM)" in result.stdout


def test_diff_with_one_stored_scan_explains(setup: CliSetup) -> None:
    run_cycle(setup)

    result = setup.invoke("diff")

    assert result.exit_code == 1
    assert "has 1 stored completed scan(s)" in result.stderr
    assert "a diff needs two" in result.stderr


def test_diff_one_scan_id_rejected(setup: CliSetup) -> None:
    result = setup.invoke("diff", "only-one")

    assert result.exit_code == 2
    assert "SCAN_ID_OLD SCAN_ID_NEW" in result.stderr


def test_diff_of_pruned_scans_explains(setup: CliSetup) -> None:
    run_cycle(setup)
    run_cycle(setup)
    prune_every_scan(setup)

    result = setup.invoke("diff")

    assert result.exit_code == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "were deleted on" in result.stderr
    assert "cannot be diffed" in result.stderr


# deliveries


@dataclass(frozen=True)
class FailedDelivery:
    setup: CliSetup
    receiver: WebhookReceiver
    delivery_id: int


@pytest.fixture
def failed_delivery(tmp_path: Path, threaded_simulator: Simulator) -> Iterator[FailedDelivery]:
    """A stored cycle whose one delivery, to a webhook, failed for good because the receiver
    returned HTTP 410."""
    with serve_in_thread(lambda: run_webhook_receiver(secret=WEBHOOK_SECRET)) as receiver:
        hook = (
            f"hook: {{type: webhook, url: '{receiver.url}', secret_env: {WEBHOOK_SECRET_VARIABLE}}}"
        )
        setup = write_setup(
            tmp_path, threaded_simulator.url, threaded_simulator.token, notifiers_yaml=hook
        )
        receiver.state.answers.append(ScriptedAnswer(410))
        # once exits 1 because the delivery gave up.
        run_cycle(setup, expected_exit_code=1)
        (failed,) = setup.invoke_json("deliveries", "list", "--status", "failed")
        yield FailedDelivery(setup, receiver, failed["id"])


def test_deliveries_list_shows_failed_delivery(failed_delivery: FailedDelivery) -> None:
    setup = failed_delivery.setup

    everything = setup.invoke_json("deliveries", "list")
    pending = setup.invoke_json("deliveries", "list", "--status", "pending")
    table = setup.invoke("deliveries", "list")

    (delivery,) = everything
    assert delivery["id"] == failed_delivery.delivery_id
    assert delivery["status"] == "failed"
    assert delivery["notifier"] == "hook"
    assert delivery["target"] == "demo"
    assert delivery["attempts"] == 1
    assert "410" in delivery["last_error"]
    assert pending == []
    assert "first_scan_summary" in table.stdout


def test_deliveries_retry_all_failed_sends_now(failed_delivery: FailedDelivery) -> None:
    setup = failed_delivery.setup

    retried = setup.invoke_json("deliveries", "retry", "--all-failed")
    (delivery,) = setup.invoke_json("deliveries", "list")

    assert retried["requeued"] == [failed_delivery.delivery_id]
    assert retried["dispatch"]["sent"] == 1
    assert delivery["status"] == "sent"
    assert delivery["webhook_id"] in failed_delivery.receiver.state.ids


def test_deliveries_retry_no_send_only_requeues(failed_delivery: FailedDelivery) -> None:
    setup = failed_delivery.setup
    requests_before = failed_delivery.receiver.state.request_count

    retried = setup.invoke_json(
        "deliveries", "retry", str(failed_delivery.delivery_id), "--no-send"
    )
    (delivery,) = setup.invoke_json("deliveries", "list")

    assert retried["requeued"] == [failed_delivery.delivery_id]
    assert retried["dispatch"] is None
    assert delivery["status"] == "pending"
    assert delivery["attempts"] == 0
    assert failed_delivery.receiver.state.request_count == requests_before


def test_deliveries_retry_sends_overdue_pending(failed_delivery: FailedDelivery) -> None:
    setup = failed_delivery.setup
    setup.invoke_json("deliveries", "retry", "--all-failed", "--no-send")

    # Nothing is failed any more, so nothing is queued again, but the pending delivery is due.
    retried = setup.invoke_json("deliveries", "retry", "--all-failed")
    (delivery,) = setup.invoke_json("deliveries", "list")

    assert retried["requeued"] == []
    assert retried["dispatch"] is not None
    assert retried["dispatch"]["sent"] == 1
    assert delivery["status"] == "sent"
    assert delivery["webhook_id"] in failed_delivery.receiver.state.ids


def test_deliveries_retry_no_send_dispatches_nothing(failed_delivery: FailedDelivery) -> None:
    setup = failed_delivery.setup
    setup.invoke_json("deliveries", "retry", "--all-failed", "--no-send")
    requests_before = failed_delivery.receiver.state.request_count

    retried = setup.invoke("deliveries", "retry", "--all-failed", "--no-send")
    (delivery,) = setup.invoke_json("deliveries", "list")

    assert retried.exit_code == 0, retried.stderr
    assert "No failed delivery to queue again." in retried.stdout
    assert "Dispatched" not in retried.stdout
    assert delivery["status"] == "pending"
    assert failed_delivery.receiver.state.request_count == requests_before


def test_deliveries_retry_sent_or_unknown_id_exits_1(failed_delivery: FailedDelivery) -> None:
    setup = failed_delivery.setup
    setup.invoke_json("deliveries", "retry", "--all-failed")

    again = setup.invoke(
        "deliveries", "retry", str(failed_delivery.delivery_id), "--output", "json"
    )
    unknown = setup.invoke("deliveries", "retry", "999", "--output", "json")

    assert again.exit_code == 1
    assert json.loads(again.stdout)["not_failed"] == [failed_delivery.delivery_id]
    assert json.loads(again.stdout)["requeued"] == []
    assert unknown.exit_code == 1
    assert json.loads(unknown.stdout)["not_found"] == [999]


def test_deliveries_retry_needs_ids_or_all_failed(setup: CliSetup) -> None:
    neither = setup.invoke("deliveries", "retry")
    both = setup.invoke("deliveries", "retry", "1", "--all-failed")

    assert neither.exit_code == 2
    assert both.exit_code == 2
    assert "delivery ids or --all-failed" in neither.stderr
