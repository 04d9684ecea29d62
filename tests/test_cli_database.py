"""`cspm-watch db upgrade`: which database it migrates, and one error line when it cannot."""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from service.cli import CONFIG_ERROR_EXIT_CODE, cli
from service.runtime import EXIT_DATABASE_ERROR
from tests.test_cli_support import logging_restored

TOKEN_VARIABLE = "CSPM_TEST_DO_TOKEN"
TOKEN = "dop_v1_" + "1" * 64
DATABASE_PASSWORD = "pw-5c1e8a-not-shown"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    with logging_restored():
        yield


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current directory, where the default database would be created."""
    directory = tmp_path / "cwd"
    directory.mkdir()
    monkeypatch.chdir(directory)
    return directory


def write_config(directory: Path, database_url: str) -> Path:
    path = directory / "cspm-watch.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            database_url: {database_url}
            targets:
              - name: demo
                token_env: {TOKEN_VARIABLE}
            notifiers:
              stdout: {{type: console}}
            """
        ),
        encoding="utf-8",
    )
    return path


def upgrade(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run `cspm-watch ARGS` with only the variables in `env` among cspm-watch's own."""
    environ: dict[str, str | None] = {
        "CSPM_WATCH_CONFIG": None,
        "CSPM_WATCH_DATABASE_URL": None,
        TOKEN_VARIABLE: TOKEN,
    }
    environ.update(env or {})
    result = CliRunner().invoke(cli, list(args), env=environ)
    assert "Traceback" not in result.stdout + result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def unused_port() -> int:
    # Nothing listens on the port once the probe socket is closed.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_db_upgrade_uses_config_database_url(tmp_path: Path, workdir: Path) -> None:
    database = tmp_path / "configured.db"
    config = write_config(tmp_path, f"sqlite+aiosqlite:///{database}")

    result = upgrade("--config", str(config), "db", "upgrade")

    assert result.exit_code == 0, result.stderr
    assert database.is_file()
    assert str(database) in result.stdout
    assert "at revision" in result.stdout
    assert list(workdir.iterdir()) == []


def test_db_upgrade_uses_config_from_environment(tmp_path: Path, workdir: Path) -> None:
    database = tmp_path / "configured.db"
    config = write_config(tmp_path, f"sqlite+aiosqlite:///{database}")

    result = upgrade("db", "upgrade", env={"CSPM_WATCH_CONFIG": str(config)})

    assert result.exit_code == 0, result.stderr
    assert database.is_file()
    assert list(workdir.iterdir()) == []


def test_db_upgrade_variable_beats_config(tmp_path: Path, workdir: Path) -> None:
    configured = tmp_path / "configured.db"
    chosen = tmp_path / "chosen.db"
    config = write_config(tmp_path, f"sqlite+aiosqlite:///{configured}")

    result = upgrade(
        "--config",
        str(config),
        "db",
        "upgrade",
        env={"CSPM_WATCH_DATABASE_URL": f"sqlite+aiosqlite:///{chosen}"},
    )

    assert result.exit_code == 0, result.stderr
    assert chosen.is_file()
    assert not configured.exists()


def test_db_upgrade_option_beats_variable(tmp_path: Path, workdir: Path) -> None:
    from_variable = tmp_path / "variable.db"
    from_option = tmp_path / "option.db"

    result = upgrade(
        "db",
        "upgrade",
        "--database-url",
        f"sqlite+aiosqlite:///{from_option}",
        env={"CSPM_WATCH_DATABASE_URL": f"sqlite+aiosqlite:///{from_variable}"},
    )

    assert result.exit_code == 0, result.stderr
    assert from_option.is_file()
    assert not from_variable.exists()


def test_db_upgrade_without_config_uses_default_file(workdir: Path) -> None:
    result = upgrade("db", "upgrade")

    assert result.exit_code == 0, result.stderr
    assert (workdir / "cspm-watch.db").is_file()


def test_db_upgrade_unreachable_postgres_prints_one_line(workdir: Path) -> None:
    url = f"postgresql+psycopg://cspm:{DATABASE_PASSWORD}@127.0.0.1:{unused_port()}/cspm"

    result = upgrade("db", "upgrade", "--database-url", url)

    assert result.exit_code == EXIT_DATABASE_ERROR
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ")
    assert "could not be migrated" in lines[0]
    assert "127.0.0.1" in lines[0]
    assert DATABASE_PASSWORD not in result.stderr


def test_db_upgrade_configured_postgres_unreachable(tmp_path: Path, workdir: Path) -> None:
    url = f"postgresql+psycopg://cspm:{DATABASE_PASSWORD}@127.0.0.1:{unused_port()}/cspm"
    config = write_config(tmp_path, url)

    result = upgrade("--config", str(config), "db", "upgrade")

    assert result.exit_code == EXIT_DATABASE_ERROR
    assert len(result.stderr.strip().splitlines()) == 1
    assert DATABASE_PASSWORD not in result.stderr
    assert list(workdir.iterdir()) == []


def test_db_upgrade_file_not_sqlite_exits_3(tmp_path: Path, workdir: Path) -> None:
    database = tmp_path / "not-a-database.db"
    database.write_bytes(b"this is not an SQLite file\n" * 200)

    result = upgrade("db", "upgrade", "--database-url", f"sqlite+aiosqlite:///{database}")

    assert result.exit_code == EXIT_DATABASE_ERROR
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "file is not a database" in lines[0]


def test_db_upgrade_invalid_url_exits_2(workdir: Path) -> None:
    result = upgrade("db", "upgrade", "--database-url", "cspm-watch.db")

    assert result.exit_code == CONFIG_ERROR_EXIT_CODE
    assert "invalid database_url" in result.stderr
    assert list(workdir.iterdir()) == []


def test_db_upgrade_invalid_config_exits_2(tmp_path: Path, workdir: Path) -> None:
    config = write_config(tmp_path, "sqlite+aiosqlite:///configured.db")

    result = upgrade("--config", str(config), "db", "upgrade", env={TOKEN_VARIABLE: ""})

    assert result.exit_code == CONFIG_ERROR_EXIT_CODE
    assert TOKEN_VARIABLE in result.stderr
    assert list(workdir.iterdir()) == []
