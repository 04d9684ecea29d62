"""The outcome of an undisturbed run, which a faulted run must end up matching."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from service.config import load_settings
from service.runtime import run_once
from service.simulator import Scenario, run_simulator
from service.storage import upgrade_database
from tests.faults.webhook_sink import SinkState, run_webhook_sink
from tests.faults.world import (
    SLACK_CHANNEL,
    SLACK_TOKEN,
    WEBHOOK_SECRET,
    Receivers,
    read_end_state,
    service_environment,
    webhook_alerts,
    write_config,
)
from tests.support.slack_server import SlackServerState, run_slack_server

States = dict[tuple[str, str], tuple[str, str]]


@dataclass(frozen=True)
class Outcome:
    """Finding states, and what each receiver got, counted by content rather than by id."""

    states: States
    slack_messages: int
    webhook_alerts: Counter[tuple[str, str, str]]
    webhook_messages: int


def outcome_of(states: States, slack: SlackServerState, sink: SinkState) -> Outcome:
    """Summarize what arrived, counting a repeated webhook-id once."""
    return Outcome(
        states=states,
        slack_messages=len(slack.accepted),
        webhook_alerts=webhook_alerts(sink.first_bodies()),
        webhook_messages=len(sink.ids),
    )


async def undisturbed_outcome(directory: Path, scenario: Scenario, cycles: int = 1) -> Outcome:
    """Run `cycles` cycles of `once` in this process with no fault, on SQLite."""
    outcome, _ = await undisturbed_run(directory, scenario, cycles)
    return outcome


async def undisturbed_run(
    directory: Path, scenario: Scenario, cycles: int
) -> tuple[Outcome, list[States]]:
    """Run `cycles` cycles without faults; return the outcome and the states after each."""
    directory.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - a local directory, once
    database_url = f"sqlite+aiosqlite:///{directory / 'reference.db'}"
    await upgrade_database(database_url)
    async with (
        run_simulator(scenario) as simulator,
        run_slack_server(token=SLACK_TOKEN, channels={SLACK_CHANNEL}) as slack,
        run_webhook_sink(secret=WEBHOOK_SECRET) as sink,
    ):
        config = write_config(
            directory,
            api_url=simulator.url,
            database_url=database_url,
            receivers=Receivers(slack.api_url, sink.url),
        )
        settings = load_settings(config, service_environment(simulator.token))
        states_by_cycle = []
        for _ in range(cycles):
            assert await run_once(settings) == 0
            states_by_cycle.append((await read_end_state(database_url)).states)
        return outcome_of(states_by_cycle[-1], slack.state, sink.state), states_by_cycle
