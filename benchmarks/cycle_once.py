"""Run one cycle of the service in this process and write its measurements as JSON.

`run.py` starts this script once per measured cycle, so that the peak memory and the CPU time
belong to that cycle alone. The simulator it sends requests to runs in the parent. The token
comes from CSPM_BENCH_TOKEN and the API URL from CSPM_WATCH_API_URL.

    python benchmarks/cycle_once.py --config cspm-watch.yaml --per-minute 250 \
        --per-hour 5000 --output cycle.json
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import time
from pathlib import Path
from typing import Any

from harness import (
    ResponseClock,
    memory_mb,
    open_benchmark_runtime,
    process_cpu_s,
    write_json,
)

from service.config import load_settings
from service.digitalocean.ratelimit import RateLimits
from service.logging import configure_logging


async def measure_cycle(arguments: argparse.Namespace) -> dict[str, Any]:
    """Run the configured target's cycle once and return what was measured."""
    rss_after_imports_mb = memory_mb("VmRSS")
    settings = load_settings(arguments.config, os.environ)
    configure_logging(level=settings.log_level, json=True)
    responses = ResponseClock()
    limits = RateLimits(per_minute=arguments.per_minute, per_hour=arguments.per_hour)
    async with open_benchmark_runtime(
        settings,
        rate_limits=limits,
        max_concurrency=arguments.max_concurrency,
        on_response=responses,
        migrate=arguments.migrate,
    ) as runtime:
        target = settings.targets[0]
        client = runtime.clients[target.name]
        profiler = cProfile.Profile() if arguments.profile else None
        cpu_before_s = time.process_time()
        started_s = time.monotonic()
        if profiler is not None:
            profiler.enable()
        result = await runtime.run_target(target)
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(arguments.profile)
        returned_s = time.monotonic()
        cycle_cpu_s = time.process_time() - cpu_before_s
    return {
        "status": result.status.value,
        "reason": result.reason,
        "counts": result.counts,
        "alerted": result.alerted,
        "deliveries_enqueued": result.deliveries_enqueued,
        "requests": result.requests,
        "rate_limited": client.stats.rate_limited,
        "retries": client.stats.retries,
        "responses_by_status": responses.statuses,
        "duration_s": result.duration_s,
        "started_s": started_s,
        "returned_s": returned_s,
        "after_last_response_s": _since(responses.last_response_s, returned_s),
        "after_collection_s": _since(responses.last_collection_response_s, returned_s),
        "cycle_cpu_s": cycle_cpu_s,
        "process_cpu_s": process_cpu_s(),
        "rss_after_imports_mb": rss_after_imports_mb,
        "peak_rss_mb": memory_mb("VmHWM"),
    }


def _since(moment_s: float | None, now_s: float) -> float | None:
    return None if moment_s is None else now_s - moment_s


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, required=True, help="configuration file")
    parser.add_argument("--output", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--per-minute", type=int, required=True, help="client's minute limit")
    parser.add_argument("--per-hour", type=int, required=True, help="client's hour limit")
    parser.add_argument("--max-concurrency", type=int, default=8, help="client connections")
    parser.add_argument("--migrate", action="store_true", help="migrate the database first")
    parser.add_argument("--profile", type=Path, help="write a cProfile file of the cycle here")
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    write_json(arguments.output, asyncio.run(measure_cycle(arguments)))


if __name__ == "__main__":
    main()
