"""The aiohttp application of the simulated DigitalOcean Security API: routes and handlers."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from service.digitalocean.models import Severity
from service.simulator import payloads, routes
from service.simulator.context import CONTEXT_KEY, SimulatorContext
from service.simulator.http import (
    PageRequest,
    bad_request,
    empty_response,
    json_response,
    not_found,
    page_links,
    parse_page_request,
    read_json_body,
)
from service.simulator.middleware import (
    auth_middleware,
    context_middleware,
    error_middleware,
    fault_middleware,
    latency_middleware,
    rate_limit_middleware,
)
from service.simulator.scenario import URN_PATTERN
from service.simulator.state import SimulatedFinding, SimulatedScan, tier_coverage_from_request

SCANS_PATH = "/v2/security/scans"
SETTINGS_PATH = "/v2/security/settings"


def create_app(
    context: SimulatorContext, *, middlewares: Iterable[Middleware] = ()
) -> web.Application:
    """Build the application; `middlewares` run outside the simulator's own ones."""
    app = web.Application(
        middlewares=[
            *middlewares,
            context_middleware,
            latency_middleware,
            rate_limit_middleware,
            auth_middleware,
            fault_middleware,
            error_middleware,
        ]
    )
    app[CONTEXT_KEY] = context

    router = app.router
    router.add_get(SCANS_PATH, list_scans, name=routes.LIST_SCANS)
    router.add_post(SCANS_PATH, create_scan, name=routes.CREATE_SCAN)
    # The literal paths must come before `{scan_id}`, which would match them too.
    router.add_get(f"{SCANS_PATH}/latest", latest_scan, name=routes.LATEST_SCAN)
    router.add_post(f"{SCANS_PATH}/rules", create_rule, name=routes.CREATE_RULE)
    router.add_get(f"{SCANS_PATH}/{{scan_id}}", get_scan, name=routes.GET_SCAN)
    router.add_get(
        f"{SCANS_PATH}/{{scan_id}}/findings/{{finding_uuid}}/affected_resources",
        affected_resources,
        name=routes.AFFECTED_RESOURCES,
    )

    router.add_get(SETTINGS_PATH, get_settings, name=routes.GET_SETTINGS)
    router.add_put(f"{SETTINGS_PATH}/plan", update_plan, name=routes.UPDATE_PLAN)
    router.add_post(
        f"{SETTINGS_PATH}/suppressions", create_suppression, name=routes.CREATE_SUPPRESSION
    )
    router.add_delete(
        f"{SETTINGS_PATH}/suppressions/{{suppression_uuid}}",
        delete_suppression,
        name=routes.DELETE_SUPPRESSION,
    )
    return app


def _context(request: web.Request) -> SimulatorContext:
    return request.app[CONTEXT_KEY]


async def list_scans(request: web.Request) -> web.Response:
    state = _context(request).state
    page = parse_page_request(request)
    newest_first = list(reversed(state.scans))
    for scan in newest_first:
        scan.observe(state.now(), poll=False)
    # Listed scans carry no findings, as in DigitalOcean's example; get_scan returns them.
    body: dict[str, Any] = {
        "scans": [payloads.scan_payload(scan, []) for scan in page.slice(newest_first)],
        "meta": {"total": len(newest_first)},
    }
    links = page_links(request, page, len(newest_first))
    if links is not None:
        body["links"] = links
    return json_response(body)


async def create_scan(request: web.Request) -> web.Response:
    body = await read_json_body(request, required=False)
    resource_urns = _scan_resources(body)
    state = _context(request).state
    scan = state.create_scan(resource_urns)
    findings = PageRequest().slice(scan.findings) if scan.completed else []
    return json_response({"scan": payloads.scan_payload(scan, findings)}, status=201)


def _scan_resources(body: Any) -> list[str] | None:
    if body is None:
        return None
    if not isinstance(body, dict):
        raise bad_request('the body must be a JSON object such as {} or {"resources": [URN]}')
    unknown = sorted(set(body) - {"resources"})
    if unknown:
        raise bad_request(f'unknown field {unknown[0]!r}; a scan takes only "resources"')
    if "resources" not in body:
        return None
    return _urn_list(body["resources"], field_name="resources", allow_empty=True) or None


async def latest_scan(request: web.Request) -> web.Response:
    state = _context(request).state
    page = parse_page_request(request)
    severity, finding_type = _finding_filters(request)
    scan = state.latest_scan()
    if scan is None:
        return json_response({"scan": payloads.scan_not_run_payload()})
    return _scan_response(scan, state.now(), page, severity, finding_type)


async def get_scan(request: web.Request) -> web.Response:
    state = _context(request).state
    page = parse_page_request(request)
    severity, finding_type = _finding_filters(request)
    scan = _find_scan(request)
    return _scan_response(scan, state.now(), page, severity, finding_type)


def _scan_response(
    scan: SimulatedScan,
    now_s: float,
    page: PageRequest,
    severity: Severity | None,
    finding_type: str | None,
) -> web.Response:
    scan.observe(now_s, poll=True)
    findings: Sequence[SimulatedFinding] = []
    if scan.completed:
        findings = page.slice(_filtered(scan.findings, severity, finding_type))
    return json_response({"scan": payloads.scan_payload(scan, findings)})


def _finding_filters(request: web.Request) -> tuple[Severity | None, str | None]:
    raw_severity = request.query.get("severity")
    severity = None
    if raw_severity is not None:
        try:
            severity = Severity(raw_severity)
        except ValueError:
            raise bad_request(
                f"severity must be one of CRITICAL, HIGH, MEDIUM, LOW, got {raw_severity!r}"
            ) from None
    return severity, request.query.get("type")


def _filtered(
    findings: Sequence[SimulatedFinding], severity: Severity | None, finding_type: str | None
) -> list[SimulatedFinding]:
    return [
        finding
        for finding in findings
        if (severity is None or finding.severity is severity)
        and (finding_type is None or finding.rule.type.lower() == finding_type.lower())
    ]


def _find_scan(request: web.Request) -> SimulatedScan:
    scan_id = request.match_info["scan_id"]
    scan = _context(request).state.scan(scan_id) if _is_uuid(scan_id) else None
    if scan is None:
        raise not_found(f"scan {scan_id} not found")
    return scan


async def affected_resources(request: web.Request) -> web.Response:
    page = parse_page_request(request)
    scan = _find_scan(request)
    finding_uuid = request.match_info["finding_uuid"]
    scan.observe(_context(request).state.now(), poll=False)
    finding = scan.findings_by_rule.get(finding_uuid.lower()) if scan.completed else None
    if finding is None:
        raise not_found(f"finding {finding_uuid} not found in scan {scan.id}")
    resources = page.slice(finding.resources)
    return json_response(
        {"affected_resources": [payloads.resource_payload(resource) for resource in resources]}
    )


async def create_rule(request: web.Request) -> web.Response:
    body = await read_json_body(request, required=True)
    if not isinstance(body, dict) or "resource" not in body:
        raise bad_request('the body must be a JSON object with a "resource" URN')
    urn = _urn(body["resource"], field_name="resource")
    _context(request).state.add_false_positive(urn)
    return empty_response(201)


async def get_settings(request: web.Request) -> web.Response:
    state = _context(request).state
    page = parse_page_request(request)
    records = list(state.suppressions.values())
    suppressions = payloads.suppressions_page(
        page.slice(records),
        page=page.page,
        pages=page.page_count(len(records)),
        total=len(records),
        links=page_links(request, page, len(records)),
    )
    return json_response(
        {
            "settings": {"suppressions": suppressions},
            "tier_coverage": payloads.tier_coverage_payload(state),
            "plan_downgrades": payloads.plan_downgrades_payload(state),
        }
    )


async def update_plan(request: web.Request) -> web.Response:
    body = await read_json_body(request, required=True)
    coverage = body.get("tier_coverage") if isinstance(body, dict) else None
    if not isinstance(coverage, dict):
        raise bad_request('the body must be a JSON object with a "tier_coverage" object')
    checked: dict[str, dict[str, list[str]]] = {}
    for tier, value in coverage.items():
        checked[tier] = _tier(tier, value)
    state = _context(request).state
    state.tier_coverage = tier_coverage_from_request(checked)
    return json_response({"tier_coverage": payloads.tier_coverage_payload(state)})


def _tier(tier: str, value: Any) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        raise bad_request(f"tier_coverage.{tier} must be an object with resources and tags")
    unknown = sorted(set(value) - {"resources", "tags"})
    if unknown:
        raise bad_request(f"tier_coverage.{tier}: unknown field {unknown[0]!r}")
    resources = _urn_list(
        value.get("resources", []), field_name=f"tier_coverage.{tier}.resources", allow_empty=True
    )
    tags = value.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) and tag for tag in tags):
        raise bad_request(f"tier_coverage.{tier}.tags must be a list of tag names")
    return {"resources": resources, "tags": tags}


async def create_suppression(request: web.Request) -> web.Response:
    body = await read_json_body(request, required=True)
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object with rule_uuid and resources")
    rule_uuid = body.get("rule_uuid")
    if not isinstance(rule_uuid, str) or not rule_uuid:
        raise bad_request("rule_uuid is missing; give the rule_uuid of a finding")
    urns = _urn_list(body.get("resources"), field_name="resources", allow_empty=False)
    state = _context(request).state
    rule = state.scenario.rules_by_uuid.get(rule_uuid.lower())
    if rule is None:
        raise not_found(f"rule {rule_uuid} not found")
    records = state.add_suppressions(rule, urns)
    page = payloads.suppressions_page(records, page=1, pages=1, total=len(records), links=None)
    return json_response(page, status=201)


async def delete_suppression(request: web.Request) -> web.Response:
    suppression_id = request.match_info["suppression_uuid"]
    deleted = _is_uuid(suppression_id) and _context(request).state.delete_suppression(
        suppression_id
    )
    if not deleted:
        raise not_found(f"suppression {suppression_id} not found")
    return empty_response(204)


def _urn_list(value: Any, *, field_name: str, allow_empty: bool) -> list[str]:
    if not isinstance(value, list) or (not value and not allow_empty):
        expected = "a list" if allow_empty else "a non-empty list"
        raise bad_request(f"{field_name} must be {expected} of URNs such as do:droplet:123")
    return [_urn(item, field_name=field_name) for item in value]


def _urn(value: Any, *, field_name: str) -> str:
    if not isinstance(value, str) or URN_PATTERN.match(value) is None:
        raise bad_request(f"{field_name}: {value!r} is not a URN; expected do:TYPE:ID")
    return value


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
