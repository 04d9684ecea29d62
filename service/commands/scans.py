"""`cspm-watch scans list|get|latest|create`: a target's scans, from the API or the database."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

from rich.console import Console
from rich.status import Status
from rich.text import Text

from service.commands.common import open_client, open_database, pick_target, warn_incomplete
from service.commands.output import (
    OutputFormat,
    format_time,
    json_time,
    print_fields,
    print_json,
    print_note,
    print_table,
)
from service.config import Settings, TargetSettings
from service.digitalocean.client import SecurityClient
from service.digitalocean.models import Collected, Finding, Scan, ScanStatus, Severity
from service.scanning.polling import PollResult, poll_until_terminal
from service.storage import ScanRecord, list_scans
from service.text import clean_line

T = TypeVar("T")

EXIT_OK = 0
# `scans create --wait` when the scan ended in any status but COMPLETED, or did not end in time.
EXIT_SCAN_NOT_COMPLETED = 1

# Signals that stop `scans create --wait`; the scan itself keeps running at DigitalOcean.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_SEVERITIES_DESCENDING = sorted(Severity, reverse=True)


def utc_now() -> datetime:
    return datetime.now(UTC)


def status_of(scan: Scan) -> str:
    """Return the scan's status in upper case, or the API's own text for an unlisted status."""
    if scan.status is ScanStatus.UNKNOWN:
        return scan.status_text or ScanStatus.UNKNOWN.value
    return str(scan.status.value)


@dataclass(frozen=True, slots=True)
class ScanSummary:
    """A scan with every finding of it, as `scans get` and `scans latest` show it."""

    scan: Scan
    findings: Collected[Finding]

    def counts_by_severity(self) -> dict[str, int]:
        counts = Counter(finding.severity for finding in self.findings.items)
        return {severity.value: counts[severity] for severity in _SEVERITIES_DESCENDING}

    def affected_resources_count(self) -> int:
        return sum(finding.affected_resources_count or 0 for finding in self.findings.items)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.scan.id,
            "status": status_of(self.scan),
            "created_at": json_time(self.scan.created_at),
            "findings_count": len(self.findings.items),
            "findings_by_severity": self.counts_by_severity(),
            "affected_resources_count": self.affected_resources_count(),
            "complete": self.findings.complete,
            "problems": list(self.findings.problems),
        }


# scans list


async def list_api_scans(settings: Settings, target_name: str | None, output: OutputFormat) -> int:
    """Print the team's scans as the DigitalOcean API lists them, newest first."""
    target = pick_target(settings, target_name)
    async with open_client(settings, target) as client:
        listing = await client.list_scans()
    scans = sorted(listing.items, key=_created_at_or_oldest, reverse=True)
    if not listing.complete:
        warn_incomplete("the list of scans", listing.problems)
    if output is OutputFormat.JSON:
        print_json([_scan_json(scan) for scan in scans])
        return EXIT_OK
    print_table(
        ["Scan ID", "Status", "Created At"],
        [(scan.id, status_of(scan), scan.created_at) for scan in scans],
        title=f"Scans of target {target.name}",
        empty="The team has no scans yet: start one with `cspm-watch scans create`.",
    )
    return EXIT_OK


async def list_stored_scans(
    settings: Settings, target_name: str | None, limit: int, output: OutputFormat
) -> int:
    """Print the scans stored in the database, newest request first, with their counts.

    Without `target_name` the scans of every target are listed.
    """
    target = settings.target(target_name).name if target_name is not None else None
    async with open_database(settings) as sessions, sessions() as session:
        records = await list_scans(session, target=target, limit=limit)
    if output is OutputFormat.JSON:
        print_json([_record_json(record) for record in records])
        return EXIT_OK
    print_table(
        ["Target", "Scan ID", "Status", "Requested At", "Findings", "New", "Resolved", "Details"],
        [
            (
                record.target,
                record.scan_id,
                record.status,
                record.requested_at,
                record.findings_count,
                record.new_count,
                record.resolved_count,
                _details_state(record),
            )
            for record in records
        ],
        title="Stored scans",
        empty="No scan is stored yet: `cspm-watch once` runs a cycle that stores one.",
    )
    return EXIT_OK


def _details_state(record: ScanRecord) -> str:
    if record.details_pruned_at is not None:
        return f"pruned {format_time(record.details_pruned_at)}"
    if record.collected_at is None:
        return "not collected"
    return "complete" if record.collection_complete else "incomplete"


# scans get and scans latest


async def show_scan(
    settings: Settings, target_name: str | None, scan_id: str, output: OutputFormat
) -> int:
    """Print a scan's status and its finding counts by severity."""
    target = pick_target(settings, target_name)
    async with open_client(settings, target) as client:
        summary = await summarize_scan(client, scan_id)
    _print_summary(summary, output)
    return EXIT_OK


async def show_latest_scan(
    settings: Settings, target_name: str | None, output: OutputFormat
) -> int:
    """Print the team's latest scan with its finding counts by severity."""
    target = pick_target(settings, target_name)
    async with open_client(settings, target) as client:
        latest = await client.collect_latest_findings()
    _print_summary(ScanSummary(latest.scan, latest.findings), output)
    return EXIT_OK


async def summarize_scan(client: SecurityClient, scan_id: str) -> ScanSummary:
    """Read a scan and every page of its findings."""
    stream = client.iter_findings(scan_id)
    findings = await stream.collect()
    if stream.scan is None:
        raise RuntimeError("the scan's first page set no scan")  # pragma: no cover
    return ScanSummary(stream.scan, findings)


def _print_summary(summary: ScanSummary, output: OutputFormat) -> None:
    if not summary.findings.complete:
        warn_incomplete(f"the findings of scan {summary.scan.id}", summary.findings.problems)
    if output is OutputFormat.JSON:
        print_json(summary.to_json())
        return
    counts = ", ".join(f"{name} {count}" for name, count in summary.counts_by_severity().items())
    print_fields(
        [
            ("Scan ID", summary.scan.id),
            ("Status", status_of(summary.scan)),
            ("Created At", summary.scan.created_at),
            ("Findings", f"{len(summary.findings.items)} ({counts})"),
            ("Affected Resources", summary.affected_resources_count()),
        ]
    )


# scans create


async def create_scan(
    settings: Settings, target_name: str | None, *, wait: bool, output: OutputFormat
) -> int:
    """Start a scan; with `wait`, poll it to the end and return 0 only if it completed.

    Polling follows the target's poll settings. The scan is not stored in the database:
    only cycles (`once`, `run`) store scans.
    """
    target = pick_target(settings, target_name)
    async with open_client(settings, target) as client:
        scan = await client.create_scan()
        if not wait:
            _print_created(scan, output)
            return EXIT_OK
        print_note(f"Started scan {scan.id}; waiting until it finishes.")
        result = await _run_until_signal(_wait_until_finished(client, target, scan))
        if isinstance(result, signal.Signals):
            _print_stopped(scan, target_name, result)
            return _exit_code_after(result)
        if result.timed_out or result.scan is None:
            _print_created(result.scan or scan, output)
            _print_timeout(scan, target, target_name, result)
            return EXIT_SCAN_NOT_COMPLETED
        summary = await summarize_scan(client, scan.id)
    _print_summary(summary, output)
    return EXIT_OK if summary.scan.status is ScanStatus.COMPLETED else EXIT_SCAN_NOT_COMPLETED


def _print_created(scan: Scan, output: OutputFormat) -> None:
    if output is OutputFormat.JSON:
        print_json(_scan_json(scan))
        return
    print_fields(
        [("Scan ID", scan.id), ("Status", status_of(scan)), ("Created At", scan.created_at)]
    )


def _print_timeout(
    scan: Scan, target: TargetSettings, target_name: str | None, result: PollResult
) -> None:
    last = f" (last error: {result.last_error})" if result.last_error else ""
    print_note(
        f"error: scan {scan.id} did not finish within poll.timeout_s={target.poll.timeout_s:g} "
        f"seconds{last}. It goes on at DigitalOcean: check it later with "
        f"`{_get_scan_command(scan, target_name)}`."
    )


def _print_stopped(scan: Scan, target_name: str | None, received: signal.Signals) -> None:
    print_note(
        f"Stopped waiting on {received.name}. Scan {scan.id} keeps running at DigitalOcean: "
        f"check it with `{_get_scan_command(scan, target_name)}`."
    )


def _get_scan_command(scan: Scan, target_name: str | None) -> str:
    target_option = f" --target {target_name}" if target_name is not None else ""
    return f"cspm-watch scans get {scan.id}{target_option}"


def _exit_code_after(received: signal.Signals) -> int:
    # The code a shell reports for a process that the signal ended: 130 for SIGINT, 143 for
    # SIGTERM. `once` and `run` exit with the same codes.
    return 128 + received


async def _run_until_signal(work: Coroutine[Any, Any, T]) -> T | signal.Signals:
    """Run `work` until it returns, or until SIGINT or SIGTERM cancels it.

    Return what `work` returned, or the signal that stopped it. A cancellation that no signal
    caused propagates as usual.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(work)
    received: list[signal.Signals] = []

    def on_signal(signum: signal.Signals) -> None:
        if not received:
            received.append(signum)
            task.cancel()

    # The handlers are in place before `work` starts, because the task first runs at the
    # `await` below.
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await task
    except asyncio.CancelledError:
        if not received:
            raise
        return received[0]
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)


async def _wait_until_finished(
    client: SecurityClient, target: TargetSettings, scan: Scan
) -> PollResult:
    deadline_at = utc_now() + timedelta(seconds=target.poll.timeout_s)
    with _ScanProgress(scan) as progress:
        return await poll_until_terminal(
            lambda: client.get_scan(scan.id, per_page=1),
            deadline_at=deadline_at,
            initial_interval_s=target.poll.initial_interval_s,
            max_interval_s=target.poll.max_interval_s,
            now=utc_now,
            on_poll=progress.on_poll,
        )


class _ScanProgress:
    """Progress display, on standard error, of a scan being polled.

    On a terminal a rich spinner shows the status, the time waited and the number of polls.
    Elsewhere one line is printed per status change, which suits logs and CI output.
    """

    def __init__(self, scan: Scan) -> None:
        self._scan_id = scan.id
        self._started_s = time.monotonic()
        self._polls = 0
        self._last_status = status_of(scan)
        console = Console(stderr=True, highlight=False)
        self._spinner: Status | None = None
        if console.is_terminal:
            self._spinner = console.status(Text(self._describe(self._last_status)))

    def __enter__(self) -> Self:
        if self._spinner is not None:
            self._spinner.start()
        else:
            print_note(self._describe(self._last_status))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._spinner is not None:
            self._spinner.stop()

    async def on_poll(self, scan: Scan) -> None:
        self._polls += 1
        status = status_of(scan)
        if self._spinner is not None:
            self._spinner.update(Text(self._describe(status)))
        elif status != self._last_status:
            print_note(self._describe(status))
        self._last_status = status

    def _describe(self, status: str) -> str:
        waited_s = time.monotonic() - self._started_s
        polls = "1 poll" if self._polls == 1 else f"{self._polls} polls"
        # The spinner prints this text without print_note, so it is cleaned here.
        return clean_line(f"Scan {self._scan_id}: {status} after {waited_s:.0f} s ({polls})")


# JSON shapes


def _scan_json(scan: Scan) -> dict[str, Any]:
    return {"id": scan.id, "status": status_of(scan), "created_at": json_time(scan.created_at)}


def _record_json(record: ScanRecord) -> dict[str, Any]:
    return {
        "target": record.target,
        "scan_id": record.scan_id,
        "status": record.status,
        "requested_at": json_time(record.requested_at),
        "created_at": json_time(record.created_at),
        "finished_at": json_time(record.finished_at),
        "collection_complete": record.collection_complete,
        "collection_problems": list(record.collection_problems),
        "findings_count": record.findings_count,
        "resources_count": record.resources_count,
        "states_updated": record.states_updated,
        "new_count": record.new_count,
        "reopened_count": record.reopened_count,
        "escalated_count": record.escalated_count,
        "resolved_count": record.resolved_count,
        "unchanged_count": record.unchanged_count,
        "alerted_count": record.alerted_count,
        "details_pruned_at": json_time(record.details_pruned_at),
        "error": record.error,
    }


def _created_at_or_oldest(scan: Scan) -> datetime:
    return scan.created_at or datetime.min.replace(tzinfo=UTC)
