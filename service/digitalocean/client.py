"""SecurityClient: the ten DigitalOcean Security (CSPM) operations over one aiohttp session.

```python
async with SecurityClient(token) as client:
    scan = await client.create_scan()
    scan = await client.get_scan(scan.id, per_page=1)        # a cheap poll
    findings = await client.collect_findings(scan.id)        # Collected[Finding]
    for finding in findings.items:
        resources = await client.collect_affected_resources(
            scan.id, finding.finding_uuid, expected=finding.affected_resources_count
        )
```

Listings read every page (see `pagination.py`) and return `Collected[T]`, which reports whether
everything arrived. Requests are paced per token (see `ratelimit.py`) and retried as
`transport.py` describes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import re
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self, TypeVar
from urllib.parse import quote

import structlog
from pydantic import SecretStr
from yarl import URL

from service import __version__
from service.digitalocean.errors import DigitalOceanError, InvalidResponseError
from service.digitalocean.models import (
    AffectedResource,
    Collected,
    CollectedScan,
    Finding,
    PlanDowngrade,
    Scan,
    Settings,
    Severity,
    Suppression,
    TierCoverage,
)
from service.digitalocean.pagination import PER_PAGE, Page, PageStream, StopPaging
from service.digitalocean.parsing import (
    ShapeError,
    parse_created_scan,
    parse_latest_scan_page,
    parse_plan,
    parse_resources_page,
    parse_scan_page,
    parse_scans_page,
    parse_settings_page,
    parse_suppressions_page,
)
from service.digitalocean.ratelimit import RateLimiter, RateLimits, limiter_for
from service.digitalocean.transport import (
    ApiResponse,
    ClientStats,
    Operation,
    ResponseHook,
    RetryMode,
    Transport,
)
from service.errors import ConfigError
from service.logging import register_secret

log = structlog.get_logger(__name__)

R = TypeVar("R")

DEFAULT_API_URL = "https://api.digitalocean.com"
DEFAULT_USER_AGENT = f"cspm-watch/{__version__}"
# After an ambiguous create-scan failure, a listed scan counts as the one the POST created when
# DigitalOcean's created_at is at most this long before the POST began: it allows for the
# difference between this host's clock and DigitalOcean's.
CREATE_SCAN_CLOCK_SKEW_S = 60.0

_SCANS_PATH = "/v2/security/scans"
_SETTINGS_PATH = "/v2/security/settings"
_URN_PATTERN = re.compile(r"do:[a-z_]+:\S+")


class SecurityClient:
    """Async client of the DigitalOcean Security API for one token.

    Use it as an async context manager, which opens one aiohttp session with a pool of
    `max_concurrency` connections. The token may be a str or a pydantic SecretStr and appears in
    no log line, error message or repr. `api_url` must be https, or plain http to a loopback
    address (the simulator). `on_response(operation, status, elapsed_s, remaining)` is called
    after every response.
    """

    def __init__(
        self,
        token: str | SecretStr,
        *,
        api_url: str = DEFAULT_API_URL,
        rate_limits: RateLimits | None = None,
        max_concurrency: int = 8,
        timeout_s: float = 30.0,
        max_retries: int = 6,
        retry_backoff_s: float = 0.5,
        user_agent: str = DEFAULT_USER_AGENT,
        on_response: ResponseHook | None = None,
    ) -> None:
        secret = _check_token(token)
        base_url = _check_api_url(api_url)
        _check_positive(max_concurrency=max_concurrency, timeout_s=timeout_s)
        if max_retries < 0 or retry_backoff_s < 0:
            raise ValueError(
                f"invalid max_retries={max_retries} or retry_backoff_s={retry_backoff_s}: "
                "both must be zero or more"
            )
        register_secret(secret.get_secret_value())

        limits = rate_limits or RateLimits()
        self.api_url = str(base_url).rstrip("/")
        self.stats = ClientStats()
        self.limiter: RateLimiter = limiter_for(
            secret.get_secret_value(), str(base_url.origin()), limits
        )
        self._transport = Transport(
            token=secret,
            origin=base_url.origin(),
            limiter=self.limiter,
            limits=limits,
            max_concurrency=max_concurrency,
            timeout_s=timeout_s,
            max_retries=max_retries,
            retry_backoff_s=retry_backoff_s,
            user_agent=user_agent,
            stats=self.stats,
            on_response=on_response,
        )

    def __repr__(self) -> str:
        return f"SecurityClient(api_url={self.api_url!r})"

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Open the HTTP session; `async with` does this."""
        await self._transport.open()

    async def close(self) -> None:
        """Close the HTTP session and its connections."""
        await self._transport.close()

    # Scans

    async def list_scans(self) -> Collected[Scan]:
        """Return every scan of the team, reading every page. Scans carry no findings here."""
        stream = PageStream(
            self._page_fetcher(Operation.LIST_SCANS, parse_scans_page),
            self._url(_SCANS_PATH, per_page=PER_PAGE, page=1),
            key=lambda scan: scan.id,
            subject="scans",
        )
        return await stream.collect()

    async def create_scan(self, *, known_scan_ids: Collection[str] = ()) -> Scan:
        """Start a scan and return it, without ever starting two.

        After a dropped connection, a timeout, a 5xx or an unreadable 2xx body, the POST may have
        started a scan. The client then lists the scans and adopts the newest one whose id is not
        in `known_scan_ids` and that was created at most CREATE_SCAN_CLOCK_SKEW_S before the POST
        began. Only when there is none does it post again.
        """
        url = self._url(_SCANS_PATH)
        started_at = datetime.now(UTC)
        for attempt in range(self._transport.max_retries + 1):
            try:
                response = await self._transport.request(
                    Operation.CREATE_SCAN, "POST", url, mode=RetryMode.SEND_ONCE
                )
                return _decode(response, parse_created_scan)
            except DigitalOceanError as error:
                if not (error.outcome_unknown or isinstance(error, InvalidResponseError)):
                    raise
                adopted = await self._find_created_scan(started_at, known_scan_ids, error)
                if adopted is not None:
                    return adopted
                # A 2xx that could not be read did start a scan, even if the listing does
                # not show it yet: posting again could start a second one.
                if (
                    isinstance(error, InvalidResponseError)
                    or attempt >= self._transport.max_retries
                ):
                    raise
                await self._wait_before_posting_again(error, attempt)
        raise AssertionError("unreachable: the last attempt raises")  # pragma: no cover

    async def get_scan(
        self,
        scan_id: str,
        *,
        per_page: int = PER_PAGE,
        page: int = 1,
        severity: Severity | str | None = None,
        type: str | None = None,  # the API's own parameter name
    ) -> Scan:
        """Return the scan with one page of its findings; `per_page=1` makes a cheap poll.

        An answer that describes another scan raises InvalidResponseError, so that a poll
        never takes another scan's status, or its findings, for this one's.
        """
        url = self._scan_url(_scan_path(scan_id), per_page, page, severity, type)

        def parse_requested_scan(body: object) -> tuple[Scan, Page[Finding]]:
            scan, findings = parse_scan_page(body)
            if scan.id.lower() != scan_id.lower():
                raise ShapeError("$.scan.id", f"describes another scan than {scan_id}")
            return scan, findings

        scan, _ = await self._get(Operation.GET_SCAN, url, parse_requested_scan)
        return scan

    async def get_latest_scan(
        self,
        *,
        per_page: int = PER_PAGE,
        page: int = 1,
        severity: Severity | str | None = None,
        type: str | None = None,  # the API's own parameter name
    ) -> Scan:
        """Return the team's latest scan with one page of its findings."""
        url = self._scan_url(f"{_SCANS_PATH}/latest", per_page, page, severity, type)
        scan, _ = await self._get(Operation.GET_LATEST_SCAN, url, parse_latest_scan_page)
        return scan

    # Findings and affected resources

    def iter_findings(
        self,
        scan_id: str,
        *,
        severity: Severity | str | None = None,
        type: str | None = None,  # the API's own parameter name
    ) -> FindingStream:
        """Stream every finding of a scan across all pages; check `complete` afterwards."""
        pages = _ScanPages(self._transport, Operation.GET_SCAN, expected_scan_id=scan_id)
        url = self._scan_url(_scan_path(scan_id), PER_PAGE, 1, severity, type)
        return FindingStream(pages, url, subject=f"findings of scan {scan_id}")

    def iter_latest_findings(
        self,
        *,
        severity: Severity | str | None = None,
        type: str | None = None,  # the API's own parameter name
    ) -> FindingStream:
        """Stream every finding of the latest scan; `scan` is set once the first page arrives."""
        pages = _ScanPages(self._transport, Operation.GET_LATEST_SCAN)
        url = self._scan_url(f"{_SCANS_PATH}/latest", PER_PAGE, 1, severity, type)
        return FindingStream(pages, url, subject="findings of the latest scan")

    async def collect_findings(
        self,
        scan_id: str,
        *,
        severity: Severity | str | None = None,
        type: str | None = None,  # the API's own parameter name
    ) -> Collected[Finding]:
        """Return every finding of a scan, reading every page."""
        return await self.iter_findings(scan_id, severity=severity, type=type).collect()

    async def collect_latest_findings(
        self,
        *,
        severity: Severity | str | None = None,
        type: str | None = None,  # the API's own parameter name
    ) -> CollectedScan:
        """Return the latest scan and every finding of it, reading every page."""
        stream = self.iter_latest_findings(severity=severity, type=type)
        findings = await stream.collect()
        if stream.scan is None:
            raise RuntimeError("the latest scan's first page set no scan")  # pragma: no cover
        return CollectedScan(scan=dataclasses.replace(stream.scan, findings=()), findings=findings)

    def iter_affected_resources(
        self, scan_id: str, finding_uuid: str, *, expected: int | None = None
    ) -> PageStream[AffectedResource]:
        """Stream a finding's affected resources across all pages.

        `expected` is the finding's `affected_resources_count`: paging stops once that many
        arrived, and fewer mark the stream incomplete.
        """
        path = f"{_scan_path(scan_id)}/findings/{_segment(finding_uuid, 'finding_uuid')}"
        return PageStream(
            self._page_fetcher(Operation.LIST_AFFECTED_RESOURCES, parse_resources_page),
            self._url(f"{path}/affected_resources", per_page=PER_PAGE, page=1),
            key=lambda resource: resource.urn,
            subject=f"affected resources of finding {finding_uuid} in scan {scan_id}",
            expected_total=expected,
        )

    async def collect_affected_resources(
        self, scan_id: str, finding_uuid: str, *, expected: int | None = None
    ) -> Collected[AffectedResource]:
        """Return a finding's affected resources, reading every page.

        With `expected=0` nothing is requested, because the finding reports no resources.
        """
        if expected == 0:
            return Collected(())
        stream = self.iter_affected_resources(scan_id, finding_uuid, expected=expected)
        return await stream.collect()

    async def create_false_positive(self, resource_urn: str) -> None:
        """Exclude a resource from future scans.

        The POST is not repeated after a failure that may have reached DigitalOcean: the error
        then has `outcome_unknown` set, and a repeat would be harmless only if DigitalOcean
        ignores duplicates, which it does not document.
        """
        _check_urn(resource_urn)
        await self._transport.request(
            Operation.CREATE_FALSE_POSITIVE,
            "POST",
            self._url(f"{_SCANS_PATH}/rules"),
            json_body={"resource": resource_urn},
            mode=RetryMode.SEND_ONCE,
        )

    # Settings

    async def get_settings(self) -> Settings:
        """Return the settings with every suppression, reading every suppression page."""
        pages = _SettingsPages(self._transport)
        stream = PageStream(
            pages,
            self._url(_SETTINGS_PATH, per_page=PER_PAGE, page=1),
            key=lambda suppression: suppression.id,
            subject="suppressions",
        )
        collected = await stream.collect()
        return Settings(
            suppressions=collected.items,
            tier_coverage=pages.tier_coverage,
            plan_downgrades=pages.plan_downgrades,
            suppressions_complete=collected.complete,
            problems=collected.problems,
        )

    async def update_plan(
        self, tier_coverage: Mapping[str, TierCoverage]
    ) -> dict[str, TierCoverage]:
        """Set which resources and tags each plan tier covers; return the coverage as stored."""
        body = {"tier_coverage": _tier_coverage_body(tier_coverage)}
        response = await self._transport.request(
            Operation.UPDATE_PLAN, "PUT", self._url(f"{_SETTINGS_PATH}/plan"), json_body=body
        )
        return _decode(response, parse_plan)

    async def create_suppression(
        self, rule_uuid: str, resource_urns: Sequence[str]
    ) -> tuple[Suppression, ...]:
        """Suppress one rule on the given resources; return the suppressions created.

        Like create_false_positive, the POST is not repeated after a failure that may have
        reached DigitalOcean: check get_settings before trying again.
        """
        _segment(rule_uuid, "rule_uuid")
        if isinstance(resource_urns, str) or not resource_urns:
            raise ValueError(
                f"invalid resource_urns {resource_urns!r}: pass a non-empty list of URNs"
            )
        for urn in resource_urns:
            _check_urn(urn)
        response = await self._transport.request(
            Operation.CREATE_SUPPRESSION,
            "POST",
            self._url(f"{_SETTINGS_PATH}/suppressions"),
            json_body={"rule_uuid": rule_uuid, "resources": list(resource_urns)},
            mode=RetryMode.SEND_ONCE,
        )
        return _decode(response, parse_suppressions_page).items

    async def delete_suppression(self, suppression_id: str) -> None:
        """Delete a suppression by its id.

        DELETE is repeated after ambiguous failures; a 404 on a repeat means an earlier attempt
        deleted it, so it counts as success.
        """
        path = f"{_SETTINGS_PATH}/suppressions/{_segment(suppression_id, 'suppression_id')}"
        response = await self._transport.request(
            Operation.DELETE_SUPPRESSION, "DELETE", self._url(path), pass_statuses={404}
        )
        if response.status != 404:
            return
        if response.attempts == 1:
            raise self._transport.http_error(response)
        log.info("suppression_already_deleted", suppression_id=suppression_id)

    # Helpers

    def _url(self, path: str, **query: str | int | None) -> URL:
        url = URL(self.api_url + path, encoded=True)
        params = {name: str(value) for name, value in query.items() if value is not None}
        return url.with_query(params) if params else url

    def _scan_url(
        self,
        path: str,
        per_page: int,
        page: int,
        severity: Severity | str | None,
        type: str | None,  # the API's own parameter name
    ) -> URL:
        if not 1 <= per_page <= PER_PAGE or page < 1:
            raise ValueError(
                f"invalid per_page={per_page} or page={page}: per_page must be 1 to {PER_PAGE} "
                "and page 1 or more"
            )
        severity_text = None if severity is None else Severity.parse(_enum_text(severity)).value
        return self._url(path, per_page=per_page, page=page, severity=severity_text, type=type)

    async def _get(self, operation: Operation, url: URL, parse: Callable[[object], R]) -> R:
        response = await self._transport.request(operation, "GET", url)
        return _decode(response, parse)

    def _page_fetcher(
        self, operation: Operation, parse: Callable[[object], Page[R]]
    ) -> Callable[[URL], Awaitable[Page[R]]]:
        async def fetch(url: URL) -> Page[R]:
            return await self._get(operation, url, parse)

        return fetch

    async def _find_created_scan(
        self, started_at: datetime, known_scan_ids: Collection[str], error: DigitalOceanError
    ) -> Scan | None:
        listing = await self.list_scans()
        earliest_at = started_at - timedelta(seconds=CREATE_SCAN_CLOCK_SKEW_S)
        # NOTE: a scan without created_at cannot be dated, so it is never adopted.
        candidates = [
            scan
            for scan in listing.items
            if scan.id not in known_scan_ids
            and scan.created_at is not None
            and scan.created_at >= earliest_at
        ]
        if not candidates:
            return None
        adopted = max(candidates, key=lambda scan: scan.created_at or earliest_at)
        log.info(
            "scan_adopted", scan_id=adopted.id, status=adopted.status.value, error=error.message
        )
        return adopted

    async def _wait_before_posting_again(self, error: DigitalOceanError, attempt: int) -> None:
        delay_s = self._transport.backoff_s(attempt)
        log.warning(
            "scan_create_retried",
            attempt=attempt + 1,
            status=error.status,
            error=error.message or type(error).__name__,
            delay_s=round(delay_s, 3),
        )
        self.stats.retries += 1
        await asyncio.sleep(delay_s)


class FindingStream(PageStream[Finding]):
    """Stream of one scan's findings; `scan` is the scan as its last page described it."""

    def __init__(self, pages: _ScanPages, first_url: URL, *, subject: str) -> None:
        super().__init__(
            pages, first_url, key=lambda finding: finding.finding_uuid, subject=subject
        )
        self._pages = pages

    @property
    def scan(self) -> Scan | None:
        return self._pages.scan


class _ScanPages:
    """Fetches pages of one scan's findings and checks that every page describes the same scan.

    The latest scan can change when a new scan starts during paging. A running scan's findings
    can change between pages. Either case stops paging with a problem.
    """

    def __init__(
        self, transport: Transport, operation: Operation, *, expected_scan_id: str | None = None
    ) -> None:
        self._transport = transport
        self._operation = operation
        self._expected_scan_id = expected_scan_id
        self.scan: Scan | None = None

    async def __call__(self, url: URL) -> Page[Finding]:
        response = await self._transport.request(self._operation, "GET", url)
        parse = (
            parse_latest_scan_page
            if self._operation is Operation.GET_LATEST_SCAN
            else parse_scan_page
        )
        scan, page = _decode(response, parse)
        self._check_same_scan(scan)
        self.scan = scan
        return page

    def _check_same_scan(self, scan: Scan) -> None:
        expected_id = self.scan.id if self.scan else self._expected_scan_id
        if expected_id is not None and scan.id != expected_id:
            raise StopPaging(f"a page of scan {expected_id} described scan {scan.id} instead")
        if self.scan is not None and scan.status != self.scan.status:
            raise StopPaging(
                f"scan {scan.id} went from {self.scan.status.value} to {scan.status.value} "
                "while its findings were read"
            )


class _SettingsPages:
    """Fetches settings pages; keeps the tier coverage and downgrades of the first page."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._first = True
        self.tier_coverage: dict[str, TierCoverage] = {}
        self.plan_downgrades: dict[str, PlanDowngrade] = {}

    async def __call__(self, url: URL) -> Page[Suppression]:
        response = await self._transport.request(Operation.GET_SETTINGS, "GET", url)
        coverage, downgrades, page = _decode(response, parse_settings_page)
        if self._first:
            self.tier_coverage, self.plan_downgrades = coverage, downgrades
            self._first = False
        return page


def _decode(response: ApiResponse, parse: Callable[[object], R]) -> R:
    """Parse a 2xx body; raise InvalidResponseError naming the operation and the bad value."""
    body = response.json()
    try:
        return parse(body)
    except ShapeError as error:
        raise InvalidResponseError(
            f"{response.operation} returned a body that does not match DigitalOcean's "
            f"documented shape (at {error}): check that api_url {response.origin} is the "
            "DigitalOcean API",
            operation=response.operation,
            status=response.status,
            message=str(error),
            request_id=response.request_id,
        ) from None


def _check_token(token: str | SecretStr) -> SecretStr:
    value = token.get_secret_value() if isinstance(token, SecretStr) else token
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("the DigitalOcean API token is empty: pass the team's API token")
    if any(character.isspace() for character in value):
        raise ConfigError(
            "the DigitalOcean API token contains whitespace: remove the spaces or line break "
            "around it (a token file often ends with a newline)"
        )
    return SecretStr(value)


def _check_api_url(api_url: str) -> URL:
    """Return the base URL; reject anything but https, or http to a loopback address."""
    url = URL(api_url)
    display_url = str(url.with_user(None)) if url.host else api_url
    if url.scheme not in ("https", "http") or not url.host:
        raise ConfigError(
            f"invalid api_url {display_url!r}: expected an https URL such as {DEFAULT_API_URL}"
        )
    if url.user or url.password or url.query_string or url.fragment:
        raise ConfigError(
            f"invalid api_url {display_url!r}: remove the credentials, query or fragment, "
            "because the token is passed separately"
        )
    if url.scheme == "http" and not _is_loopback(url.host):
        raise ConfigError(
            f"api_url {display_url!r} uses plain http, which would send the token unencrypted: use "
            "https, or plain http only to a loopback address (127.0.0.0/8, ::1, localhost)"
        )
    return url


def _is_loopback(host: str) -> bool:
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"invalid {name}={value}: it must be more than 0")


def _check_urn(urn: str) -> None:
    if not isinstance(urn, str) or not _URN_PATTERN.fullmatch(urn):
        raise ValueError(
            f"invalid resource URN {urn!r}: expected do:TYPE:ID, for example do:droplet:123"
        )


def _segment(value: str, name: str) -> str:
    """Return `value` percent-encoded for one path segment; reject an empty one."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"invalid {name} {value!r}: it must be a non-empty string")
    return quote(value, safe="")


def _scan_path(scan_id: str) -> str:
    return f"{_SCANS_PATH}/{_segment(scan_id, 'scan_id')}"


def _enum_text(value: Severity | str) -> str:
    return value.value if isinstance(value, Severity) else value


def _tier_coverage_body(tier_coverage: Mapping[str, TierCoverage]) -> dict[str, object]:
    body: dict[str, object] = {}
    for tier, coverage in tier_coverage.items():
        _segment(tier, "tier name")
        for urn in coverage.resources:
            _check_urn(urn)
        body[tier] = {"resources": list(coverage.resources), "tags": list(coverage.tags)}
    return body
