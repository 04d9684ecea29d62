"""Collect one scan with pydo, DigitalOcean's official Python client, as its README suggests.

This is the baseline the service is compared with: one synchronous call after another, 200
items a page, findings first and then the affected resources finding by finding. Paging
follows `links.pages.next` as pydo's README shows. The get-scan and affected-resources calls
return no `links`, so for them the script requests the next page until a page comes back short.
It triggers the scan and polls it on the same schedule as the service, so both make the same
kinds of requests; it stores nothing.

    CSPM_BENCH_TOKEN=... python benchmarks/pydo_baseline.py --api-url http://127.0.0.1:8080 \
        --output pydo.json
"""

from __future__ import annotations

import argparse
import functools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pydo
from harness import TOKEN_VARIABLE, memory_mb, process_cpu_s, write_json

PER_PAGE = 200
TERMINAL_STATUSES = {"COMPLETED", "FAILED", "CSPM_NOT_ENABLED"}


def collect(security: Any, initial_interval_s: float, max_interval_s: float) -> dict[str, Any]:
    """Trigger a scan, poll it until it ends, and read every finding and affected resource."""
    created = security.create_scan(enforce_https=False)
    scan_id = created["scan"]["id"]
    status = _poll(security, scan_id, initial_interval_s, max_interval_s)

    findings: list[dict[str, Any]] = []
    for page in _pages(lambda number: security.get_scan(scan_id, **_page_query(number))):
        findings.extend(page["scan"]["findings"])

    resources = 0
    for finding in findings:
        fetch = functools.partial(_resource_page, security, scan_id, finding["rule_uuid"])
        for page in _pages(fetch):
            resources += len(page["affected_resources"])
    return {"scan_status": status, "findings": len(findings), "affected_resources": resources}


def _poll(security: Any, scan_id: str, initial_interval_s: float, max_interval_s: float) -> str:
    interval_s = initial_interval_s
    while True:
        status = str(security.get_scan(scan_id, per_page=1, enforce_https=False)["scan"]["status"])
        if status.upper() in TERMINAL_STATUSES:
            return status
        time.sleep(interval_s)
        interval_s = min(interval_s * 2, max_interval_s)


def _resource_page(security: Any, scan_id: str, rule_uuid: str, number: int) -> dict[str, Any]:
    page: dict[str, Any] = security.list_scan_finding_affected_resources(
        scan_id, rule_uuid, **_page_query(number)
    )
    return page


def _page_query(number: int) -> dict[str, Any]:
    return {"per_page": PER_PAGE, "page": number, "enforce_https": False}


def _pages(fetch: Callable[[int], dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Yield pages from number 1: to `links.pages.next` when a page has it, else to the next
    number while pages come back full."""
    number = 1
    while True:
        page = fetch(number)
        yield page
        next_url = page.get("links", {}).get("pages", {}).get("next")
        if next_url:
            number = int(parse_qs(urlparse(next_url).query)["page"][0])
        elif "links" not in page and _items(page) == PER_PAGE:
            number += 1
        else:
            return


def _items(page: dict[str, Any]) -> int:
    if "scan" in page:
        return len(page["scan"].get("findings") or ())
    return len(page.get("affected_resources") or ())


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api-url", required=True, help="the simulator's base URL")
    parser.add_argument("--output", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--initial-interval-s", type=float, default=1.0, help="first poll wait")
    parser.add_argument("--max-interval-s", type=float, default=60.0, help="maximum poll wait")
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    client = pydo.Client(token=os.environ[TOKEN_VARIABLE], endpoint=arguments.api_url)
    cpu_before_s = time.process_time()
    started_s = time.monotonic()
    collected = collect(client.security, arguments.initial_interval_s, arguments.max_interval_s)
    finished_s = time.monotonic()
    write_json(
        arguments.output,
        {
            **collected,
            "duration_s": finished_s - started_s,
            "started_s": started_s,
            "finished_s": finished_s,
            "cpu_s": time.process_time() - cpu_before_s,
            "process_cpu_s": process_cpu_s(),
            "peak_rss_mb": memory_mb("VmHWM"),
        },
    )


if __name__ == "__main__":
    main()
