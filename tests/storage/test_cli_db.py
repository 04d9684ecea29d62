"""`cspm-watch db upgrade` migrates the database named by option or environment."""

from __future__ import annotations

import asyncio

from click.testing import CliRunner

from service.cli import cli
from service.storage import database_revision, head_revision, mask_database_url


def test_db_upgrade_option_migrates(blank_database_url: str) -> None:
    result = CliRunner().invoke(cli, ["db", "upgrade", "--database-url", blank_database_url])

    assert result.exit_code == 0, result.output
    assert f"is at revision {head_revision()}" in result.output
    assert mask_database_url(blank_database_url) in result.output
    assert asyncio.run(database_revision(blank_database_url)) == head_revision()


def test_db_upgrade_reads_environment(blank_database_url: str) -> None:
    environment = {"CSPM_WATCH_DATABASE_URL": blank_database_url}

    result = CliRunner().invoke(cli, ["db", "upgrade"], env=environment)

    assert result.exit_code == 0, result.output
    assert asyncio.run(database_revision(blank_database_url)) == head_revision()


def test_db_upgrade_unsupported_url_masks_password() -> None:
    url = "mysql://watch:hunter2-secret@db/cspm"

    result = CliRunner().invoke(cli, ["db", "upgrade", "--database-url", url])

    # 2, as for any invalid configuration or usage.
    assert result.exit_code == 2
    assert "unsupported database_url" in result.output
    assert "hunter2-secret" not in result.output
