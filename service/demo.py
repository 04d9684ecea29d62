"""The embedded demo: the whole job against the built-in simulator, with no account needed.

It starts the simulator on a free loopback port and writes a configuration file that points
a target at it. Then it runs three cycles through the real service: a baseline scan (one
summary), a scan with new and escalated findings (alerts), and a scan where findings are
resolved. The console notifier prints every message, and a webhook notifier is added when
CSPM_WATCH_DEMO_WEBHOOK_URL is set.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

import click
from sqlalchemy import func, select

from service.config import Settings, load_settings
from service.runtime import open_runtime
from service.scanning.cycle import CycleResult
from service.simulator import default_scenario, run_simulator
from service.storage import (
    AffectedResourceRecord,
    DeliveryRecord,
    FindingRecord,
    FindingStateRecord,
    ScanRecord,
)

# The simulator's token goes in this file beside the configuration, so that the commands the
# demo suggests can read the stored data after it ends. It opens only the demo's simulator.
DEMO_TOKEN_FILE = "simulator-token"  # noqa: S105 - a file name
# Names of environment variables, not secrets.
DEMO_WEBHOOK_URL_VARIABLE = "CSPM_WATCH_DEMO_WEBHOOK_URL"
DEMO_WEBHOOK_SECRET_VARIABLE = "CSPM_WATCH_DEMO_WEBHOOK_SECRET"  # noqa: S105

CYCLE_TITLES = (
    "Cycle 1: the first scan is the baseline, so it sends one summary, not an alert per finding",
    "Cycle 2: new and escalated findings at HIGH or above are alerted",
    "Cycle 3: fixed findings are resolved, and resolved ones are reported in one message",
)


def demo_config(api_url: str, database_path: Path, *, webhook_url: str | None) -> str:
    """Return the YAML configuration the demo runs with, also a starting point for real use."""
    notifiers = ["stdout"]
    webhook_block = ""
    if webhook_url:
        notifiers.append("receiver")
        webhook_block = textwrap.dedent(
            f"""\
            receiver:
              type: webhook
              url: {webhook_url}
              secret_env: {DEMO_WEBHOOK_SECRET_VARIABLE}
            """
        )
    return textwrap.dedent(
        f"""\
        # Written by `cspm-watch demo`. For a real team, set api_url to
        # https://api.digitalocean.com (or drop it), point token_file (or token_env) at a
        # DigitalOcean token with the security:read and security:create scopes, and replace the
        # console notifier with Slack or a webhook (see docs/configuration.md).
        database_url: sqlite+aiosqlite:///{database_path}
        api_url: {api_url}
        targets:
          - name: demo
            token_file: {DEMO_TOKEN_FILE}
            schedule: {{interval_s: 3600}}
            poll: {{initial_interval_s: 0.2, max_interval_s: 1, timeout_s: 60}}
            alerts:
              min_severity: HIGH
              on_first_scan: summary
              notify_resolved: true
              notifiers: [{", ".join(notifiers)}]
        notifiers:
          stdout:
            type: console
        """
    ) + textwrap.indent(webhook_block, "  ")


def run_demo(data_dir: Path, environ: Mapping[str, str] | None = None) -> int:
    """Run the demo in `data_dir` (emptied first) and return the exit code."""
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    data_dir = data_dir.absolute()
    return asyncio.run(_run_demo(data_dir, dict(os.environ if environ is None else environ)))


async def _run_demo(data_dir: Path, environ: dict[str, str]) -> int:
    webhook_url = environ.get(DEMO_WEBHOOK_URL_VARIABLE) or None
    if webhook_url and not environ.get(DEMO_WEBHOOK_SECRET_VARIABLE):
        click.echo(
            f"{DEMO_WEBHOOK_URL_VARIABLE} is set but {DEMO_WEBHOOK_SECRET_VARIABLE} is not: set "
            "it to the receiver's whsec_... signing secret",
            err=True,
        )
        return 2

    async with run_simulator(default_scenario()) as simulator:
        click.secho(f"Simulated DigitalOcean Security API listening at {simulator.url}", bold=True)
        config_path = data_dir / "cspm-watch.yaml"
        config = demo_config(simulator.url, data_dir / "cspm-watch.db", webhook_url=webhook_url)
        await asyncio.to_thread(config_path.write_text, config)
        await asyncio.to_thread(_write_token_file, data_dir / DEMO_TOKEN_FILE, simulator.token)
        settings = load_settings(config_path, environ)
        results = await _run_cycles(settings)
        await _print_summary(settings, config_path, results)
    failed = [result for result in results if not result.status.succeeded]
    return 1 if failed else 0


async def _run_cycles(settings: Settings) -> list[CycleResult]:
    target = settings.targets[0]
    results: list[CycleResult] = []
    async with open_runtime(settings) as runtime:
        for title in CYCLE_TITLES:
            click.echo()
            click.secho(title, bold=True, fg="cyan")
            click.echo()
            result = await runtime.run_target(target)
            await runtime.dispatch()
            click.secho(_describe(result), fg="green" if result.status.succeeded else "red")
            results.append(result)
    return results


def _describe(result: CycleResult) -> str:
    if not result.status.succeeded:
        return f"Cycle {result.status.value}: {result.reason}"
    counts = ", ".join(f"{count} {kind}" for kind, count in result.counts.items() if count)
    return (
        f"Scan {result.scan_id} {result.scan_status}: {counts or 'no findings'}; "
        f"{result.alerted} alerted, {_plural(result.deliveries_enqueued, 'message')}, "
        f"{result.requests} API requests in {result.duration_s:.1f} s"
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _write_token_file(path: Path, token: str) -> None:
    path.touch(mode=0o600)
    path.write_text(token + "\n", encoding="utf-8")


def _command_name() -> str:
    """Return how the user can call cspm-watch: the name on PATH, else the script beside the
    running interpreter, such as .venv/bin/cspm-watch after `make demo`."""
    if shutil.which("cspm-watch"):
        return "cspm-watch"
    script = Path(sys.executable).parent / "cspm-watch"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


async def _print_summary(settings: Settings, config_path: Path, results: list[CycleResult]) -> None:
    async with open_runtime(settings, migrate=False) as runtime, runtime.sessions() as session:
        counts = {
            "scans": await session.scalar(select(func.count()).select_from(ScanRecord)),
            "findings": await session.scalar(select(func.count()).select_from(FindingRecord)),
            "affected resources": await session.scalar(
                select(func.count()).select_from(AffectedResourceRecord)
            ),
            "finding states": await session.scalar(
                select(func.count()).select_from(FindingStateRecord)
            ),
            "deliveries": await session.scalar(select(func.count()).select_from(DeliveryRecord)),
        }
    click.echo()
    click.secho("Stored in the database:", bold=True)
    for name, count in counts.items():
        click.echo(f"  {count:>6} {name}")
    click.echo()
    click.secho("Next steps", bold=True)
    command = await asyncio.to_thread(_command_name)
    click.echo(
        textwrap.indent(
            textwrap.dedent(
                f"""\
              The configuration the demo used is {config_path}.
              Explore what was stored:
                {command} --config {config_path} scans list --stored
                {command} --config {config_path} diff --target demo
              To watch a real team, export DIGITALOCEAN_TOKEN and SLACK_WEBHOOK_URL and run
                {command} once      # one cycle, then exit (a CronJob does this)
                {command} run       # the daemon with its own scheduler
              or write a configuration file like config/example.yaml and pass --config.
            """
            ),
            "  ",
        )
    )
