"""A local DigitalOcean Security (CSPM) API for demos, tests and benchmarks.

```python
async with run_simulator(default_scenario()) as sim:
    sim.url, sim.token          # base URL and an accepted bearer token
    sim.faults.add("get_scan", FaultKind.SERVER_ERROR)
    sim.stats.count("get_scan", 500)
```
"""

from service.simulator.clock import Clock, FakeClock, SystemClock
from service.simulator.faults import FAULT_HEADER, FaultKind, FaultPlan
from service.simulator.generator import generate_scenario
from service.simulator.ratelimit import SimulatorRateLimits
from service.simulator.routes import ROUTE_NAMES
from service.simulator.scenario import (
    Resource,
    Rule,
    RuleStep,
    ScanOutcome,
    ScanPlan,
    Scenario,
    ScenarioError,
    default_scenario,
    load_scenario,
    parse_scenario,
)
from service.simulator.server import Simulator, generate_token, run_simulator, serve
from service.simulator.stats import RequestStats

__all__ = [
    "FAULT_HEADER",
    "ROUTE_NAMES",
    "Clock",
    "FakeClock",
    "FaultKind",
    "FaultPlan",
    "RequestStats",
    "Resource",
    "Rule",
    "RuleStep",
    "ScanOutcome",
    "ScanPlan",
    "Scenario",
    "ScenarioError",
    "Simulator",
    "SimulatorRateLimits",
    "SystemClock",
    "default_scenario",
    "generate_scenario",
    "generate_token",
    "load_scenario",
    "parse_scenario",
    "run_simulator",
    "serve",
]
