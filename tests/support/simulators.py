"""Helpers to run the simulator in tests: a factory type and a simulator on its own thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Any, Protocol, TypeVar

from service.simulator import Scenario, Simulator, run_simulator
from tests.support.openapi import OpenApiValidator

_START_TIMEOUT_S = 30.0

T = TypeVar("T")


class SimulatorFactory(Protocol):
    """What the `make_simulator` fixture returns.

    Keyword arguments go to `run_simulator` (token, rate_limits, latency_s, clock, tokens,
    middlewares). `validate=False` turns the OpenAPI check off for that simulator.
    """

    async def __call__(
        self, scenario: Scenario | None = None, *, validate: bool = True, **options: Any
    ) -> Simulator: ...


@contextmanager
def serve_in_thread(
    make_server: Callable[[], AbstractAsyncContextManager[T]],
) -> Iterator[T]:
    """Enter the async context manager `make_server()` on a background thread's own event
    loop, yield what it returns, and leave it when the block ends. Synchronous code (pydo,
    click's CliRunner) can then talk to the server."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def serve() -> None:
        try:
            async with make_server() as server:
                holder["server"] = server
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
        raise RuntimeError(f"the server did not start within {_START_TIMEOUT_S} s")
    if "error" in holder:
        thread.join()
        raise RuntimeError("the server failed to start") from holder["error"]
    try:
        yield holder["server"]
    finally:
        loop.call_soon_threadsafe(holder["stop"].set)
        thread.join(_START_TIMEOUT_S)
        loop.close()


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
    middlewares = [validator.middleware] if validator is not None else []
    with serve_in_thread(
        lambda: run_simulator(scenario, middlewares=middlewares, **options)
    ) as simulator:
        yield simulator
