"""Hostile configuration: wrong types, unknown keys, missing secrets, unreadable secret files,
an unreachable database. The daemon and `once` must exit with a clear error naming the problem,
before any request reaches the API and before any alert is sent."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.cli import CONFIG_ERROR_EXIT_CODE
from service.runtime import EXIT_DATABASE_ERROR
from tests.faults.processes import ServiceProcess, run_to_end
from tests.faults.throwaway_postgres import free_port
from tests.faults.webhook_sink import WebhookSink
from tests.faults.world import (
    SLACK_TOKEN,
    TOKEN_VARIABLE,
    WEBHOOK_SECRET,
    WEBHOOK_SECRET_VARIABLE,
    service_environment,
)
from tests.support.simulators import SimulatorFactory

Config = dict[str, Any]


@dataclass(frozen=True)
class Place:
    """Where a case writes its files: a directory that an unprivileged user can read too."""

    directory: Path

    def file(self, name: str, content: str | bytes, mode: int = 0o644) -> Path:
        path = self.directory / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        path.chmod(mode)
        return path


@dataclass(frozen=True)
class Case:
    """A broken configuration: how to break the base one, the exit code, and what the error
    message must contain."""

    name: str
    breaks: Callable[[Config, Place], None]
    exit_code: int
    says: tuple[str, ...]
    commands: tuple[str, ...] = ("run",)
    unprivileged: bool = False


def _target(config: Config) -> dict[str, Any]:
    target: dict[str, Any] = config["targets"][0]
    return target


def _poll_of_wrong_type(config: Config, _place: Place) -> None:
    _target(config)["poll"] = {"timeout_s": "soon"}


def _targets_of_wrong_type(config: Config, _place: Place) -> None:
    config["targets"] = "acme"


def _interval_of_wrong_type(config: Config, _place: Place) -> None:
    _target(config)["schedule"] = {"interval_s": [3600]}


def _unknown_target_key(config: Config, _place: Place) -> None:
    _target(config)["scheduel"] = {"interval_s": 60}


def _unknown_top_key(config: Config, _place: Place) -> None:
    config["databse_url"] = config["database_url"]


def _missing_token_variable(config: Config, _place: Place) -> None:
    _target(config)["token_env"] = "FAULTS_TOKEN_NOBODY_SET"


def _token_file(path_of: Callable[[Place], Path]) -> Callable[[Config, Place], None]:
    def breaks(config: Config, place: Place) -> None:
        target = _target(config)
        del target["token_env"]
        target["token_file"] = str(path_of(place))

    return breaks


def _invalid_webhook_secret(config: Config, place: Place) -> None:
    config["notifiers"]["soc"]["secret_file"] = str(place.file("webhook", "not-a-signing-secret"))
    del config["notifiers"]["soc"]["secret_env"]


def _unreachable_postgres(config: Config, _place: Place) -> None:
    config["database_url"] = f"postgresql+psycopg://cspm:pw-9f8e7d@127.0.0.1:{free_port()}/cspm"


def _unreachable_postgres_unmigrated(config: Config, place: Place) -> None:
    _unreachable_postgres(config, place)
    config["migrate_on_start"] = False


def _missing_sqlite_directory(config: Config, place: Place) -> None:
    config["database_url"] = f"sqlite+aiosqlite:///{place.directory / 'absent' / 'db.sqlite'}"


CASES = [
    Case(
        "poll_of_wrong_type",
        _poll_of_wrong_type,
        CONFIG_ERROR_EXIT_CODE,
        ("targets[0].poll.timeout_s",),
    ),
    Case("targets_of_wrong_type", _targets_of_wrong_type, CONFIG_ERROR_EXIT_CODE, ("targets",)),
    Case(
        "interval_of_wrong_type", _interval_of_wrong_type, CONFIG_ERROR_EXIT_CODE, ("interval_s",)
    ),
    Case("unknown_target_key", _unknown_target_key, CONFIG_ERROR_EXIT_CODE, ("scheduel",)),
    Case("unknown_top_key", _unknown_top_key, CONFIG_ERROR_EXIT_CODE, ("databse_url",)),
    Case(
        "missing_token_variable",
        _missing_token_variable,
        CONFIG_ERROR_EXIT_CODE,
        ("FAULTS_TOKEN_NOBODY_SET",),
    ),
    Case(
        "token_file_missing",
        _token_file(lambda place: place.directory / "absent-token"),
        CONFIG_ERROR_EXIT_CODE,
        ("absent-token", "does not exist"),
    ),
    Case(
        "token_file_directory",
        _token_file(lambda place: place.directory),
        CONFIG_ERROR_EXIT_CODE,
        ("is a directory",),
    ),
    Case(
        "token_file_unreadable",
        _token_file(lambda place: place.file("token", "dop_v1_" + "a" * 64, mode=0o000)),
        2,
        ("not readable",),
        unprivileged=True,
    ),
    Case(
        "token_file_empty",
        _token_file(lambda place: place.file("token", "\n")),
        2,
        ("is empty",),
    ),
    Case(
        "token_file_binary",
        _token_file(lambda place: place.file("token", b"\xff\xfe\x00token")),
        2,
        ("not UTF-8",),
    ),
    Case("invalid_webhook_secret", _invalid_webhook_secret, CONFIG_ERROR_EXIT_CODE, ("whsec_",)),
    Case(
        "unreachable_postgres",
        _unreachable_postgres,
        EXIT_DATABASE_ERROR,
        ("database",),
        commands=("run", "once"),
    ),
    Case(
        "unreachable_postgres_unmigrated",
        _unreachable_postgres_unmigrated,
        EXIT_DATABASE_ERROR,
        ("database",),
        commands=("run", "once"),
    ),
    Case(
        "missing_sqlite_directory",
        _missing_sqlite_directory,
        EXIT_DATABASE_ERROR,
        ("does not exist",),
        commands=("run", "once"),
    ),
]


@pytest.fixture
def place() -> Iterator[Place]:
    # Under /tmp itself and readable by everyone, so that an unprivileged process can read
    # the configuration (pytest's temporary directories are private to their user).
    directory = Path(tempfile.mkdtemp(prefix="cspm-faults-config-"))
    directory.chmod(0o755)
    yield Place(directory)
    shutil.rmtree(directory, ignore_errors=True)


def base_config(api_url: str, webhook_url: str, place: Place) -> Config:
    return {
        "database_url": f"sqlite+aiosqlite:///{place.directory / 'cspm-watch.db'}",
        "api_url": api_url,
        "listen": "127.0.0.1:0",
        "targets": [
            {
                "name": "acme",
                "token_env": TOKEN_VARIABLE,
                "schedule": {"interval_s": 1},
                "alerts": {"on_first_scan": "alert"},
            }
        ],
        "notifiers": {
            "soc": {"type": "webhook", "url": webhook_url, "secret_env": WEBHOOK_SECRET_VARIABLE}
        },
    }


def unprivileged_prefix() -> list[str]:
    """Run as the user nobody when this test runs as root, who may read any file."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def assert_stopped_before_work(
    service: ServiceProcess, case: Case, requests: int, sink: WebhookSink, secrets: list[str]
) -> None:
    assert service.process.returncode == case.exit_code, service.stderr
    for fragment in case.says:
        assert fragment in service.stderr, service.stderr
    assert "Traceback" not in service.stderr
    assert requests == 0
    assert sink.state.accepted == []
    assert "scan_triggered" not in service.event_names()
    for secret in secrets:
        assert secret not in service.stderr


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_hostile_config_stops_before_work(
    case: Case, place: Place, make_simulator: SimulatorFactory, webhook_sink: WebhookSink
) -> None:
    simulator = await make_simulator()
    config = base_config(simulator.url, webhook_sink.url, place)
    case.breaks(config, place)
    config_path = place.file("cspm-watch.yaml", yaml.safe_dump(config))
    environment = service_environment(simulator.token)
    prefix = unprivileged_prefix() if case.unprivileged else []

    for command in case.commands:
        service = await run_to_end([command], config_path, environment, prefix=prefix)

        assert_stopped_before_work(
            service,
            case,
            simulator.stats.total,
            webhook_sink,
            [simulator.token, WEBHOOK_SECRET, SLACK_TOKEN, "pw-9f8e7d"],
        )
