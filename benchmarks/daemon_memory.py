"""Run the daemon's scheduler for a number of cycles and write its memory after each as JSON.

The scheduler, jobs and runtime are the daemon's own: `service.scheduler.build_scheduler` with
the runtime's cycle, dispatch and retention jobs. Only the API client is built here, so that it
keeps the simulator's rate limits. The token comes from CSPM_BENCH_TOKEN and the API URL
from CSPM_WATCH_API_URL.

    python benchmarks/daemon_memory.py --config cspm-watch.yaml --cycles 20 --per-minute 25000 \
        --per-hour 500000 --output daemon.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import Any

from harness import ResponseClock, memory_mb, open_benchmark_runtime, write_json

from service.config import TargetSettings, load_settings
from service.digitalocean.ratelimit import RateLimits
from service.logging import configure_logging
from service.runtime import Runtime
from service.scanning.cycle import CycleResult
from service.scheduler import build_scheduler


async def run_daemon_cycles(arguments: argparse.Namespace) -> dict[str, Any]:
    """Start the daemon's scheduler, wait for `--cycles` cycles, and record RSS after each."""
    settings = load_settings(arguments.config, os.environ)
    configure_logging(level=settings.log_level, json=True)
    limits = RateLimits(per_minute=arguments.per_minute, per_hour=arguments.per_hour)
    async with open_benchmark_runtime(
        settings,
        rate_limits=limits,
        max_concurrency=arguments.max_concurrency,
        on_response=ResponseClock(),
        migrate=True,
    ) as runtime:
        readings = CycleReadings(runtime, arguments.cycles)
        scheduler = build_scheduler(
            settings, run_target=readings.run_target, dispatch=runtime.dispatch, prune=runtime.prune
        )
        scheduler.start()
        rss_after_start_mb = memory_mb("VmRSS")
        try:
            await readings.done.wait()
        finally:
            scheduler.shutdown(wait=False)
            await asyncio.gather(*runtime.running, return_exceptions=True)
    return {
        "cycles": len(readings.rss_mb),
        "statuses": [result.status.value for result in runtime.results],
        "durations_s": [result.duration_s for result in runtime.results],
        "rss_after_start_mb": rss_after_start_mb,
        "rss_after_cycle_mb": readings.rss_mb,
        "peak_rss_mb": memory_mb("VmHWM"),
    }


class CycleReadings:
    """The daemon's cycle job, wrapped to read RSS after each cycle and its dispatch."""

    def __init__(self, runtime: Runtime, cycles: int) -> None:
        self._runtime = runtime
        self._cycles = cycles
        self.rss_mb: list[float] = []
        self.done = asyncio.Event()

    async def run_target(self, target: TargetSettings) -> CycleResult:
        result = await self._runtime.run_target_and_dispatch(target)
        if len(self.rss_mb) < self._cycles:
            self.rss_mb.append(memory_mb("VmRSS"))
        if len(self.rss_mb) >= self._cycles:
            self.done.set()
        return result


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="configuration file")
    parser.add_argument("--output", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--cycles", type=int, default=20, help="cycles to wait for")
    parser.add_argument("--per-minute", type=int, required=True, help="client's minute limit")
    parser.add_argument("--per-hour", type=int, required=True, help="client's hour limit")
    parser.add_argument("--max-concurrency", type=int, default=8, help="client connections")
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    write_json(arguments.output, asyncio.run(run_daemon_cycles(arguments)))


if __name__ == "__main__":
    main()
