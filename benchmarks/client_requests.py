"""Count the requests SecurityClient makes to read one large scan, against the minimum.

Workload: one completed scan with 450 findings and 20,000 affected resources in all, every
resource fetched (the scenario generator's output for seed 7, trimmed to exactly those sizes).
The minimum is ceil(450 / 200) finding pages plus, for each finding, ceil(count / 200)
resource pages; creating and polling the scan are counted apart.

Time is compressed, not the limits raised: the simulator's clock runs FACTOR times faster than
real time, and the client's windows (and safety margin) are FACTOR times shorter. The limits
stay at DigitalOcean's 250 requests a minute and 5,000 an hour, so the minute limit binds
exactly as it would at full length, in 1/FACTOR of the time. `--factor 1` runs in real time.

    .venv/bin/python benchmarks/client_requests.py [--factor 20]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import time
from dataclasses import dataclass

from service.digitalocean import RateLimits, SecurityClient
from service.digitalocean.models import AffectedResource, Collected, Finding
from service.logging import configure_logging
from service.simulator import Scenario, SimulatorRateLimits, generate_scenario, run_simulator

FINDINGS = 450
AFFECTED_RESOURCES = 20_000
PER_PAGE = 200
PER_MINUTE = 250
PER_HOUR = 5000


class CompressedClock:
    """Unix time that runs `factor` times faster than the real clock from its creation."""

    def __init__(self, factor: float) -> None:
        self._factor = factor
        self._start_s = time.time()

    def now(self) -> float:
        return self._start_s + (time.time() - self._start_s) * self._factor


@dataclass(frozen=True)
class Measurement:
    findings: int
    affected_resources: int
    finding_requests: int
    resource_requests: int
    minimum_requests: int
    setup_requests: int
    rate_limited_client: int
    rate_limited_server: int
    complete: bool
    elapsed_real_s: float
    elapsed_simulated_s: float
    lower_bound_simulated_s: float


def build_scenario() -> Scenario:
    """Return a generated team whose first scan has exactly FINDINGS and AFFECTED_RESOURCES."""
    scenario = generate_scenario(
        7, rules=525, resources=AFFECTED_RESOURCES, affected_per_resource=1.02
    )
    plan = scenario.scans[0]
    kept = sorted(plan.findings.items(), key=lambda item: len(item[1]), reverse=True)[:FINDINGS]
    excess = sum(len(urns) for _, urns in kept) - AFFECTED_RESOURCES
    largest_rule, largest_urns = kept[0]
    if excess > 0:
        kept[0] = (largest_rule, largest_urns[: len(largest_urns) - excess])
    findings = dict(kept)
    plan = dataclasses.replace(plan, findings=findings)
    return dataclasses.replace(scenario, scans=(plan,))


def minimum_requests(findings: int, resource_counts: list[int]) -> int:
    finding_pages = math.ceil(findings / PER_PAGE)
    return finding_pages + sum(math.ceil(count / PER_PAGE) for count in resource_counts)


async def measure(factor: float) -> Measurement:
    scenario = build_scenario()
    client_limits = RateLimits(
        per_minute=PER_MINUTE,
        per_hour=PER_HOUR,
        minute_s=60.0 / factor,
        hour_s=3600.0 / factor,
        margin_s=1.0 / factor,
    )
    server_limits = SimulatorRateLimits(per_minute=PER_MINUTE, per_hour=PER_HOUR)
    clock = CompressedClock(factor)
    async with run_simulator(scenario, clock=clock, rate_limits=server_limits) as simulator:
        client = SecurityClient(simulator.token, api_url=simulator.url, rate_limits=client_limits)
        async with client:
            started_s = time.monotonic()
            scan = await client.create_scan()
            while not (await client.get_scan(scan.id, per_page=1)).status.is_terminal:
                pass
            setup_requests = client.stats.total_requests

            findings = await client.collect_findings(scan.id)
            resources = await collect_all_resources(client, scan.id, findings)
            elapsed_real_s = time.monotonic() - started_s

        finding_requests = client.stats.requests_for("get_scan") - (setup_requests - 1)
        resource_counts = [finding.affected_resources_count or 0 for finding in findings.items]
        total_requests = client.stats.total_requests
        return Measurement(
            findings=len(findings.items),
            affected_resources=sum(len(collected.items) for collected in resources),
            finding_requests=finding_requests,
            resource_requests=client.stats.requests_for("list_affected_resources"),
            minimum_requests=minimum_requests(len(findings.items), resource_counts),
            setup_requests=setup_requests,
            rate_limited_client=client.stats.rate_limited,
            rate_limited_server=simulator.stats.count(status=429),
            complete=findings.complete and all(collected.complete for collected in resources),
            elapsed_real_s=elapsed_real_s,
            elapsed_simulated_s=elapsed_real_s * factor,
            # Starting from an empty window, request k (from 0) can go at floor(k / 250) minutes.
            lower_bound_simulated_s=((total_requests - 1) // PER_MINUTE) * 60.0,
        )


async def collect_all_resources(
    client: SecurityClient, scan_id: str, findings: Collected[Finding]
) -> list[Collected[AffectedResource]]:
    """Fetch every finding's resources at once; the client bounds the concurrency."""
    collections = await asyncio.gather(
        *(
            client.collect_affected_resources(
                scan_id, finding.finding_uuid, expected=finding.affected_resources_count
            )
            for finding in findings.items
        )
    )
    return list(collections)


def report(measurement: Measurement, factor: float) -> str:
    made = measurement.finding_requests + measurement.resource_requests
    return "\n".join(
        [
            f"time compression factor:    {factor:g} (limits {PER_MINUTE}/minute, {PER_HOUR}/hour)",
            f"findings:                   {measurement.findings}",
            f"affected resources fetched: {measurement.affected_resources}",
            f"collection complete:        {measurement.complete}",
            f"finding page requests:      {measurement.finding_requests}",
            f"resource page requests:     {measurement.resource_requests}",
            f"requests made to collect:   {made}",
            f"minimum possible:           {measurement.minimum_requests}",
            f"create and poll requests:   {measurement.setup_requests}",
            f"429s met (client/server):   "
            f"{measurement.rate_limited_client}/{measurement.rate_limited_server}",
            f"elapsed, real:              {measurement.elapsed_real_s:.1f} s",
            f"elapsed, simulated:         {measurement.elapsed_simulated_s:.1f} s",
            f"fastest the limit allows:   {measurement.lower_bound_simulated_s:.1f} s",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--factor",
        type=float,
        default=20.0,
        help="how many times faster than real time the rate-limit windows run (default 20)",
    )
    arguments = parser.parse_args()
    if arguments.factor < 1:
        parser.error(f"--factor {arguments.factor} is below 1: pass 1 for real time or more")
    # Retries and 429s log at WARNING; per-request lines would drown the report.
    configure_logging(level="WARNING", json=False)
    print(report(asyncio.run(measure(arguments.factor)), arguments.factor))


if __name__ == "__main__":
    main()
