"""Helpers to run the simulator in tests: a factory type and a simulator on its own thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from service.simulator import Scenario, Simulator, run_simulator
from tests.support.openapi import OpenApiValidator

_START_TIMEOUT_S = 30.0


class SimulatorFactory(Protocol):
    """What the `make_simulator` fixture returns.

    Keyword arguments go to `run_simulator` (token, rate_limits, latency_s, clock, tokens,
    middlewares). `validate=False` turns the OpenAPI check off for that simulator.
    """

    async def __call__(
        self, scenario: Scenario | None = None, *, validate: bool = True, **options: Any
    ) -> Simulator: ...


@contextmanager
def simulator_in_thread(
    scenario: Scenario | None = None,
    *,
    validator: OpenApiValidator | None = None,
    **options: Any,
) -> Iterator[Simulator]:
    """Run a simulator on a background thread with its own event loop, for synchronous code
    (pydo, click's CliRunner). Faults and state can be changed from the test's thread between
    requests."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def serve() -> None:
        middlewares = [validator.middleware] if validator is not None else []
        try:
            async with run_simulator(scenario, middlewares=middlewares, **options) as simulator:
                holder["simulator"] = simulator
                holder["stop"] = asyncio.Event()
                started.set()
                await holder["stop"].wait()
        except BaseException as error:
            holder["error"] = error
            started.set()
            raise

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    if not started.wait(_START_TIMEOUT_S):
        raise RuntimeError(f"the simulator did not start within {_START_TIMEOUT_S} s")
    if "error" in holder:
        thread.join()
        raise RuntimeError("the simulator failed to start") from holder["error"]
    try:
        yield holder["simulator"]
    finally:
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(_START_TIMEOUT_S)
        loop.close()
