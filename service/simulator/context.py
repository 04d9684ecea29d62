"""The per-application context that the simulator's middlewares and handlers share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aiohttp import web

from service.simulator.clock import Clock
from service.simulator.faults import FaultPlan
from service.simulator.ratelimit import RateLimiter
from service.simulator.state import SimulatorState
from service.simulator.stats import RequestStats


@dataclass
class SimulatorContext:
    """State, faults, stats, limits and accepted tokens of one simulated API.

    `tokens` maps each accepted bearer token to its scopes; None grants every scope.
    """

    state: SimulatorState
    clock: Clock
    limiter: RateLimiter
    faults: FaultPlan = field(default_factory=FaultPlan)
    stats: RequestStats = field(default_factory=RequestStats)
    tokens: dict[str, frozenset[str] | None] = field(default_factory=dict)
    latency_s: float = 0.0

    def scopes_of(self, token: str) -> frozenset[str] | None:
        return self.tokens.get(token)

    def accepts(self, token: str) -> bool:
        return token in self.tokens

    def add_tokens(self, tokens: Mapping[str, frozenset[str] | None]) -> None:
        self.tokens.update(tokens)


CONTEXT_KEY = web.AppKey("simulator_context", SimulatorContext)
