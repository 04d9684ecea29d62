"""Run the simulator: in-process for tests and benchmarks, or as a server until a signal."""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from service.simulator.app import create_app
from service.simulator.clock import Clock, FakeClock, SystemClock
from service.simulator.context import SimulatorContext
from service.simulator.faults import FaultPlan
from service.simulator.ratelimit import RateLimiter, SimulatorRateLimits
from service.simulator.routes import ALL_SCOPES
from service.simulator.scenario import Scenario, default_scenario, load_scenario
from service.simulator.state import SimulatorState
from service.simulator.stats import RequestStats

log = structlog.get_logger(__name__)

# DigitalOcean's limits per token: 250 requests a minute and 5,000 an hour.
DEFAULT_RATE_LIMITS = SimulatorRateLimits(per_minute=250, per_hour=5000)


def generate_token() -> str:
    """Return a random token in the shape of a DigitalOcean personal access token."""
    return "dop_v1_" + secrets.token_hex(32)


@dataclass
class Simulator:
    """A running simulator: its base URL, an accepted token, and handles for tests."""

    url: str
    token: str
    app: web.Application
    context: SimulatorContext

    @property
    def scenario(self) -> Scenario:
        return self.context.state.scenario

    @property
    def state(self) -> SimulatorState:
        return self.context.state

    @property
    def faults(self) -> FaultPlan:
        return self.context.faults

    @property
    def stats(self) -> RequestStats:
        return self.context.stats

    @property
    def clock(self) -> Clock:
        return self.context.clock

    @property
    def rate_limiter(self) -> RateLimiter:
        return self.context.limiter

    def advance(self, seconds: float) -> None:
        """Move the fake clock forward; raises TypeError when the simulator uses a real clock."""
        clock = self.context.clock
        if not isinstance(clock, FakeClock):
            raise TypeError(
                "advance() needs a fake clock: start the simulator with clock=FakeClock()"
            )
        clock.advance(seconds)

    def add_token(self, token: str, scopes: Iterable[str] | None = None) -> None:
        """Accept another token; `scopes` limits it (None grants every scope)."""
        granted = None if scopes is None else frozenset(scopes)
        if granted is not None and not granted <= ALL_SCOPES:
            unknown = ", ".join(sorted(granted - ALL_SCOPES))
            raise ValueError(f"unknown scopes {unknown}; use {', '.join(sorted(ALL_SCOPES))}")
        self.context.add_tokens({token: granted})


@asynccontextmanager
async def run_simulator(
    scenario: Scenario | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | None = None,
    rate_limits: SimulatorRateLimits = DEFAULT_RATE_LIMITS,
    latency_s: float = 0.0,
    clock: Clock | None = None,
    middlewares: Iterable[Middleware] = (),
    tokens: Mapping[str, Iterable[str] | None] | None = None,
) -> AsyncIterator[Simulator]:
    """Serve the simulated API on `host`:`port` (0 picks a free port) until the block exits.

    `token` is accepted with every scope (a random one when None); `tokens` adds more, each
    with its scopes. `middlewares` wrap the simulator's own, so they see every request and
    the final response.
    """
    clock = clock or SystemClock()
    scenario = scenario or default_scenario()
    context = SimulatorContext(
        state=SimulatorState(scenario, clock),
        clock=clock,
        limiter=RateLimiter(rate_limits, clock),
        latency_s=latency_s,
    )
    app = create_app(context, middlewares=middlewares)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = _bound_port(runner)
        simulator = Simulator(
            url=f"http://{_url_host(host)}:{bound_port}",
            token=token or generate_token(),
            app=app,
            context=context,
        )
        simulator.add_token(simulator.token)
        for extra_token, scopes in (tokens or {}).items():
            simulator.add_token(extra_token, scopes)
        log.debug("simulator_started", url=simulator.url, scenario=scenario.name)
        yield simulator
    finally:
        await runner.cleanup()
        log.debug("simulator_stopped")


def _bound_port(runner: web.AppRunner) -> int:
    address = runner.addresses[0]
    return int(address[1])


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


async def serve(
    host: str,
    port: int,
    scenario_path: str | Path | None,
    token: str | None,
    *,
    latency_s: float = 0.0,
    rate_limits: SimulatorRateLimits | None = None,
    on_started: Callable[[Simulator], None] | None = None,
) -> None:
    """Run the simulator until SIGINT or SIGTERM; `on_started` gets it once it listens."""
    scenario = load_scenario(scenario_path) if scenario_path else default_scenario()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    async with run_simulator(
        scenario,
        host=host,
        port=port,
        token=token,
        rate_limits=rate_limits or DEFAULT_RATE_LIMITS,
        latency_s=latency_s,
    ) as simulator:
        log.info("simulator_listening", url=simulator.url, scenario=scenario.name)
        if on_started is not None:
            on_started(simulator)
        await stop.wait()
    log.info("simulator_stopped", requests=simulator.stats.total)


def startup_banner(simulator: Simulator, *, show_token: bool) -> str:
    """Describe a running simulator with example commands.

    `show_token` prints the token itself, which suits a token generated for this run only; a
    token the user chose is referred to, not repeated.
    """
    scenario = simulator.scenario
    token = simulator.token if show_token else "$DIGITALOCEAN_TOKEN"
    token_line = (
        f"token:    {simulator.token}  (generated for this run; other tokens get 401)"
        if show_token
        else "token:    the value given with --token"
    )
    scans_url = f"{simulator.url}/v2/security/scans"
    return "\n".join(
        [
            f"DigitalOcean Security API simulator listening on {simulator.url}",
            f"scenario: {scenario.name} ({len(scenario.resources)} resources, "
            f"{len(scenario.rules)} rules, {len(scenario.scans)} scan plans)",
            token_line,
            "",
            "Try it:",
            f'  curl -s -X POST -H "Authorization: Bearer {token}" {scans_url}',
            f'  curl -s -H "Authorization: Bearer {token}" {scans_url}/latest',
            f"  DIGITALOCEAN_TOKEN={token} CSPM_WATCH_API_URL={simulator.url} \\",
            "    cspm-watch scans create --wait",
            "",
            "Press Ctrl+C to stop.",
        ]
    )
