"""Unit tests of the response parsers: documented shapes, spelling drift and invalid values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from service.digitalocean.models import ScanStatus, Severity
from service.digitalocean.parsing import (
    ShapeError,
    parse_created_scan,
    parse_resources_page,
    parse_scan_page,
    parse_scans_page,
    parse_settings_page,
)

FINDING = {
    "rule_uuid": "rule-1",
    "name": "Droplet Backups Not Enabled",
    "severity": "HIGH",
    "found_at": "2026-01-02T03:04:05Z",
    "mitigation_steps": [{"step": 1, "title": "Enable backups", "description": "Turn them on."}],
    "affected_resources_count": 3,
}


def scan_body(status: str = "COMPLETED", **finding: Any) -> dict[str, Any]:
    return {
        "scan": {
            "id": "scan-1",
            "status": status,
            "created_at": "2026-01-02T03:00:00Z",
            "findings": [{**FINDING, **finding}],
        }
    }


def test_parse_scan_page_reads_documented_fields() -> None:
    scan, page = parse_scan_page(scan_body())

    finding = page.items[0]
    assert scan.id == "scan-1"
    assert scan.status is ScanStatus.COMPLETED
    assert scan.created_at == datetime(2026, 1, 2, 3, 0, tzinfo=UTC)
    assert finding.severity is Severity.HIGH
    assert finding.finding_uuid == "rule-1"
    assert finding.mitigation_steps[0].title == "Enable backups"
    assert finding.affected_resources_count == 3


@pytest.mark.parametrize("status", ["RUNNING", "queued", "", None])
def test_parse_scan_unknown_status_is_unknown(status: str | None) -> None:
    scan, _ = parse_scan_page(scan_body(status=status))  # type: ignore[arg-type]

    assert scan.status is ScanStatus.UNKNOWN
    assert not scan.status.is_terminal


def test_parse_scan_lower_case_enums_are_read() -> None:
    scan, page = parse_scan_page(scan_body(status="completed", severity="critical"))

    assert scan.status is ScanStatus.COMPLETED
    assert scan.status_text == "completed"
    assert page.items[0].severity is Severity.CRITICAL


def test_parse_finding_unknown_severity_is_invalid() -> None:
    with pytest.raises(ShapeError, match=r"findings\[0\]\.severity"):
        parse_scan_page(scan_body(severity="URGENT"))


def test_parse_finding_own_id_is_its_finding_uuid() -> None:
    _, page = parse_scan_page(scan_body(uuid="finding-9"))

    assert page.items[0].finding_uuid == "finding-9"
    assert page.items[0].rule_uuid == "rule-1"


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ([], "$"),
        ({"scan": []}, "$.scan"),
        ({"scan": {"status": "COMPLETED"}}, "$.scan.id"),
        (scan_body(affected_resources_count="3"), "affected_resources_count"),
        (scan_body(affected_resources_count=True), "affected_resources_count"),
        (scan_body(found_at="yesterday"), "found_at"),
        (scan_body(rule_uuid=None), "rule_uuid"),
        ({"scan": {"id": "s", "findings": {}}}, "$.scan.findings"),
    ],
)
def test_parse_scan_page_wrong_shape_names_the_path(body: object, path: str) -> None:
    with pytest.raises(ShapeError) as raised:
        parse_scan_page(body)

    assert path in str(raised.value)


def test_parse_created_scan_accepts_wrapped_and_bare() -> None:
    wrapped = parse_created_scan({"scan": {"id": "a", "status": "IN_PROGRESS"}})
    bare = parse_created_scan({"id": "b", "status": "IN_PROGRESS"})

    assert wrapped.id == "a"
    assert bare.id == "b"


def test_parse_created_scan_without_id_is_invalid() -> None:
    with pytest.raises(ShapeError):
        parse_created_scan({"status": "IN_PROGRESS"})


def test_parse_scans_page_requires_meta_total() -> None:
    with pytest.raises(ShapeError, match=r"\$\.meta"):
        parse_scans_page({"scans": []})


def test_parse_scans_page_reads_links_and_total() -> None:
    page = parse_scans_page(
        {
            "scans": [{"id": "a"}],
            "links": {"pages": {"next": "https://api.example/v2/security/scans?page=2"}},
            "meta": {"total": 201},
        }
    )

    assert page.next_url == "https://api.example/v2/security/scans?page=2"
    assert page.has_links
    assert page.total == 201


def test_parse_resources_page_requires_the_list() -> None:
    with pytest.raises(ShapeError, match=r"\$\.affected_resources"):
        parse_resources_page({"resources": []})


def test_parse_settings_page_reads_every_part() -> None:
    coverage, downgrades, page = parse_settings_page(
        {
            "settings": {
                "suppressions": {
                    "resources": [{"id": "s1", "rule_uuid": "r1", "resource_id": "42"}],
                    "meta": {"page": 1, "pages": 1, "total": 1},
                }
            },
            "tier_coverage": {"basic": {"resources": ["do:droplet:1"], "tags": ["prod"]}},
            "plan_downgrades": {
                "basic": {"resources": ["do:droplet:2"], "effective_at": "2026-09-01T00:00:00Z"}
            },
        }
    )

    assert page.items[0].id == "s1"
    assert page.total == 1
    assert coverage["basic"].tags == ("prod",)
    assert downgrades["basic"].effective_at == datetime(2026, 9, 1, tzinfo=UTC)
