"""Parsers from decoded JSON bodies to the typed models.

Each parser checks the shape the OpenAPI file documents and raises ShapeError with the JSON path
of the first value that does not fit, so a wrong body fails here and not in a later step. The
OpenAPI file marks no scan or finding field as required. The parsers still require the fields
that the service cannot work without: a scan's `id`, a finding's `rule_uuid` and `severity`, a
resource's `urn` and a suppression's `id`. A missing or null optional field takes its default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TypeVar

from service.digitalocean.models import (
    AffectedResource,
    Finding,
    MitigationStep,
    PlanDowngrade,
    Scan,
    ScanStatus,
    Severity,
    Suppression,
    TierCoverage,
)
from service.digitalocean.pagination import Page

T = TypeVar("T")


# Longest string the parsers accept: free text (names, details, links), and identifiers and
# enumerations (ids, URNs, statuses, severities, date-times). DigitalOcean's values are far
# shorter; a longer one is garbage that would otherwise reach the database and the logs.
MAX_TEXT_CHARS = 16_384
MAX_TOKEN_CHARS = 1_024
# A problem quotes at most this much of a bad value.
MAX_PROBLEM_CHARS = 300

_TOKEN_KEYS = frozenset(
    {"id", "uuid", "rule_uuid", "urn", "status", "severity", "type", "resource_id",
     "resource_type", "created_at", "found_at", "effective_at"}
)  # fmt: skip


class ShapeError(ValueError):
    """A decoded body does not have the documented shape; `path` locates the value."""

    def __init__(self, path: str, problem: str) -> None:
        if len(problem) > MAX_PROBLEM_CHARS:
            problem = problem[: MAX_PROBLEM_CHARS - 3] + "..."
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def parse_scans_page(body: object) -> Page[Scan]:
    """Parse one page of GET /v2/security/scans."""
    root = _object(body, "$")
    scans = tuple(
        parse_scan(item, f"$.scans[{index}]")
        for index, item in enumerate(_list(root.get("scans"), "$.scans", required=False))
    )
    next_url, has_links = _links(root)
    meta = _object(root.get("meta"), "$.meta")
    total = _int(meta, "total", "$.meta", required=True)
    return Page(scans, next_url=next_url, has_links=has_links, total=total)


def parse_scan_page(body: object, *, require_id: bool = True) -> tuple[Scan, Page[Finding]]:
    """Parse GET /v2/security/scans/{id} or /latest: the scan and its page of findings."""
    root = _object(body, "$")
    scan = parse_scan(root.get("scan"), "$.scan", require_id=require_id)
    next_url, has_links = _links(root)
    page = Page(scan.findings, next_url=next_url, has_links=has_links, total=_meta_total(root))
    return scan, page


def parse_created_scan(body: object) -> Scan:
    """Parse the response of POST /v2/security/scans: `{"scan": {...}}` or a bare scan."""
    root = _object(body, "$")
    if isinstance(root.get("scan"), dict):
        return parse_scan(root["scan"], "$.scan")
    if "id" in root:
        return parse_scan(root, "$")
    raise ShapeError("$", "expected a `scan` object or a bare scan with an `id`")


def parse_resources_page(body: object) -> Page[AffectedResource]:
    """Parse one page of a finding's affected resources."""
    root = _object(body, "$")
    path = "$.affected_resources"
    items = _list(root.get("affected_resources"), path, required=True)
    resources = tuple(
        parse_affected_resource(item, f"{path}[{index}]") for index, item in enumerate(items)
    )
    next_url, has_links = _links(root)
    return Page(resources, next_url=next_url, has_links=has_links, total=_meta_total(root))


def parse_settings_page(
    body: object,
) -> tuple[dict[str, TierCoverage], dict[str, PlanDowngrade], Page[Suppression]]:
    """Parse one page of GET /v2/security/settings: coverage, downgrades and suppressions."""
    root = _object(body, "$")
    settings = _object(root.get("settings"), "$.settings")
    suppressions = _object(settings.get("suppressions"), "$.settings.suppressions", required=False)
    page = parse_suppressions_page(suppressions, "$.settings.suppressions")
    coverage = parse_tier_coverage(root.get("tier_coverage"), "$.tier_coverage")
    downgrades = _map(root.get("plan_downgrades"), "$.plan_downgrades", _parse_plan_downgrade)
    return coverage, downgrades, page


def parse_suppressions_page(value: object, path: str = "$") -> Page[Suppression]:
    """Parse `{resources, links, meta}`: a page of suppressions."""
    root = _object(value, path, required=False)
    items = _list(root.get("resources"), f"{path}.resources", required=False)
    suppressions = tuple(
        parse_suppression(item, f"{path}.resources[{index}]") for index, item in enumerate(items)
    )
    next_url, has_links = _links(root, path)
    return Page(suppressions, next_url=next_url, has_links=has_links, total=_meta_total(root, path))


def parse_plan(body: object) -> dict[str, TierCoverage]:
    """Parse the response of PUT /v2/security/settings/plan."""
    root = _object(body, "$")
    return parse_tier_coverage(root.get("tier_coverage"), "$.tier_coverage")


def parse_tier_coverage(value: object, path: str) -> dict[str, TierCoverage]:
    return _map(value, path, _parse_tier)


def parse_latest_scan_page(body: object) -> tuple[Scan, Page[Finding]]:
    """Parse GET /v2/security/scans/latest, whose scan may lack an id.

    Before any scan exists, the simulator returns a scan that has status SCAN_NOT_RUN and
    no id, so the parsed scan then has an empty `id`.
    """
    # NOTE: DigitalOcean does not document its response for a team without scans.
    return parse_scan_page(body, require_id=False)


def parse_scan(value: object, path: str, *, require_id: bool = True) -> Scan:
    scan = _object(value, path)
    status_text = _str(scan, "status", path)
    findings = _list(scan.get("findings"), f"{path}.findings", required=False)
    return Scan(
        id=_str(scan, "id", path, required=require_id),
        status=ScanStatus.parse(status_text),
        status_text=status_text,
        created_at=_datetime(scan, "created_at", path),
        findings=tuple(
            parse_finding(item, f"{path}.findings[{index}]") for index, item in enumerate(findings)
        ),
    )


def parse_finding(value: object, path: str) -> Finding:
    finding = _object(value, path)
    severity_text = _str(finding, "severity", path, required=True)
    try:
        severity = Severity.parse(severity_text)
    except ValueError as error:
        raise ShapeError(f"{path}.severity", str(error)) from None
    count = _int(finding, "affected_resources_count", path)
    if count is not None and count < 0:
        raise ShapeError(f"{path}.affected_resources_count", f"{count} is negative")
    steps = _list(finding.get("mitigation_steps"), f"{path}.mitigation_steps", required=False)
    return Finding(
        rule_uuid=_str(finding, "rule_uuid", path, required=True),
        name=_str(finding, "name", path),
        severity=severity,
        details=_str(finding, "details", path),
        found_at=_datetime(finding, "found_at", path),
        business_impact=_str(finding, "business_impact", path),
        technical_details=_str(finding, "technical_details", path),
        mitigation_steps=tuple(
            _parse_step(step, f"{path}.mitigation_steps[{index}]")
            for index, step in enumerate(steps)
        ),
        affected_resources_count=count,
        finding_uuid=_str(finding, "uuid", path) or _str(finding, "id", path),
    )


def parse_affected_resource(value: object, path: str) -> AffectedResource:
    resource = _object(value, path)
    return AffectedResource(
        urn=_str(resource, "urn", path, required=True),
        name=_str(resource, "name", path),
        type=_str(resource, "type", path),
    )


def parse_suppression(value: object, path: str) -> Suppression:
    suppression = _object(value, path)
    return Suppression(
        id=_str(suppression, "id", path, required=True),
        rule_uuid=_str(suppression, "rule_uuid", path),
        rule_name=_str(suppression, "rule_name", path),
        resource_id=_str(suppression, "resource_id", path),
        resource_type=_str(suppression, "resource_type", path),
    )


def _parse_step(value: object, path: str) -> MitigationStep:
    step = _object(value, path)
    return MitigationStep(
        step=_int(step, "step", path),
        title=_str(step, "title", path),
        description=_str(step, "description", path),
    )


def _parse_tier(value: object, path: str) -> TierCoverage:
    tier = _object(value, path)
    return TierCoverage(
        resources=_strings(tier.get("resources"), f"{path}.resources"),
        tags=_strings(tier.get("tags"), f"{path}.tags"),
    )


def _parse_plan_downgrade(value: object, path: str) -> PlanDowngrade:
    downgrade = _object(value, path)
    return PlanDowngrade(
        resources=_strings(downgrade.get("resources"), f"{path}.resources"),
        effective_at=_datetime(downgrade, "effective_at", path),
    )


def _links(root: Mapping[str, object], path: str = "$") -> tuple[str | None, bool]:
    """Return `links.pages.next` and whether `links.pages` names any page."""
    links = _object(root.get("links"), f"{path}.links", required=False)
    pages = _object(links.get("pages"), f"{path}.links.pages", required=False)
    names = ("first", "prev", "next", "last")
    for name in names:
        _str(pages, name, f"{path}.links.pages")
    next_url = _str(pages, "next", f"{path}.links.pages") or None
    has_links = any(pages.get(name) for name in names)
    return next_url, has_links


def _meta_total(root: Mapping[str, object], path: str = "$") -> int | None:
    meta = _object(root.get("meta"), f"{path}.meta", required=False)
    total = _int(meta, "total", f"{path}.meta")
    if total is not None and total < 0:
        raise ShapeError(f"{path}.meta.total", f"{total} is negative")
    return total


def _describe(value: object) -> str:
    if value is None:
        return "null"
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }
    return names.get(type(value), f"a {type(value).__name__}")


def _object(value: object, path: str, *, required: bool = True) -> Mapping[str, object]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise ShapeError(path, f"expected an object, got {_describe(value)}")
    return value


def _list(value: object, path: str, *, required: bool) -> list[object]:
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise ShapeError(path, f"expected an array, got {_describe(value)}")
    return value


def _map(value: object, path: str, parse_entry: Callable[[object, str], T]) -> dict[str, T]:
    entries = _object(value, path, required=False)
    return {name: parse_entry(entry, f"{path}.{name}") for name, entry in entries.items()}


def _str(obj: Mapping[str, object], key: str, path: str, *, required: bool = False) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise ShapeError(f"{path}.{key}", "missing")
        return ""
    if not isinstance(value, str):
        raise ShapeError(f"{path}.{key}", f"expected a string, got {_describe(value)}")
    if required and not value.strip():
        raise ShapeError(f"{path}.{key}", "empty")
    max_chars = MAX_TOKEN_CHARS if key in _TOKEN_KEYS else MAX_TEXT_CHARS
    if len(value) > max_chars:
        problem = f"a string of {len(value):,} characters, over the {max_chars:,} allowed"
        raise ShapeError(f"{path}.{key}", problem)
    return value


def _strings(value: object, path: str) -> tuple[str, ...]:
    items = _list(value, path, required=False)
    for index, item in enumerate(items):
        if not isinstance(item, str):
            raise ShapeError(f"{path}[{index}]", f"expected a string, got {_describe(item)}")
    return tuple(str(item) for item in items)


def _int(obj: Mapping[str, object], key: str, path: str, *, required: bool = False) -> int | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise ShapeError(f"{path}.{key}", "missing")
        return None
    # bool is a subclass of int in Python, but `true` is no count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ShapeError(f"{path}.{key}", f"expected an integer, got {_describe(value)}")
    return value


def _datetime(obj: Mapping[str, object], key: str, path: str) -> datetime | None:
    text = _str(obj, key, path)
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ShapeError(f"{path}.{key}", f"{text!r} is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
