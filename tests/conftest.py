"""Fixtures shared by every test folder: simulators of the DigitalOcean Security API.

Each simulator from these fixtures checks every exchange against DigitalOcean's OpenAPI file
(tests/support/openapi.py). A test that made the simulator respond outside the file fails at
teardown with the list of exchanges.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from typing import Any

import pytest

from service.simulator import Scenario, Simulator, run_simulator
from tests.support.openapi import OpenApiValidator
from tests.support.simulators import SimulatorFactory, simulator_in_thread


@pytest.fixture
def openapi_validator() -> OpenApiValidator:
    """The validator that the simulator fixtures install; inspect `failures` in a test."""
    return OpenApiValidator()


@pytest.fixture
async def make_simulator(openapi_validator: OpenApiValidator) -> AsyncIterator[SimulatorFactory]:
    """Start simulators with custom scenarios or settings; all stop when the test ends."""
    async with AsyncExitStack() as stack:

        async def make(
            scenario: Scenario | None = None, *, validate: bool = True, **options: Any
        ) -> Simulator:
            middlewares = list(options.pop("middlewares", ()))
            if validate:
                middlewares.insert(0, openapi_validator.middleware)
            return await stack.enter_async_context(
                run_simulator(scenario, middlewares=middlewares, **options)
            )

        yield make
    openapi_validator.assert_no_failures()


@pytest.fixture
async def simulator(make_simulator: SimulatorFactory) -> Simulator:
    """A simulator of the built-in scenario on a free port, with OpenAPI validation."""
    return await make_simulator()


@pytest.fixture
def threaded_simulator(openapi_validator: OpenApiValidator) -> Iterator[Simulator]:
    """The built-in scenario served from a background thread, for synchronous tests."""
    with simulator_in_thread(validator=openapi_validator) as simulator:
        yield simulator
    openapi_validator.assert_no_failures()
