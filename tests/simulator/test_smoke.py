"""The simulator completes a scan of the built-in scenario."""

from __future__ import annotations

from service.simulator import Simulator
from tests.simulator.calls import api_caller


async def test_simulator_scan_round_trip(simulator: Simulator) -> None:
    async with api_caller(simulator) as api:
        created = await api.create_scan()
        scan = await api.finish_scan(created["id"])

    assert scan["status"] == "COMPLETED"
    assert len(scan["findings"]) == 15
