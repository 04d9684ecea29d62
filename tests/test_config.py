"""Tests of configuration loading, validation, masking and `cspm-watch config check`."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.cli import cli
from service.config import (
    DEFAULT_API_URL,
    DEFAULT_CRON,
    DEFAULT_DATABASE_URL,
    ConsoleNotifierSettings,
    FirstScanPolicy,
    SlackNotifierSettings,
    SlackWebhookNotifierSettings,
    WebhookNotifierSettings,
    load_settings,
    parse_cron,
)
from service.digitalocean.models import Severity
from service.errors import ConfigError
from service.logging import REDACTED, redact_text

REPO_ROOT = Path(__file__).resolve().parent.parent

WriteConfig = Callable[[str], Path]


def fresh_secret(prefix: str = "plain_") -> str:
    """Return a secret that no earlier test registered for log redaction.

    Plain secrets match none of the credential patterns in service.logging, so a test that
    finds one missing from the output proves that the code never printed it, not that the
    redaction hid it.
    """
    return prefix + secrets.token_hex(16)


def fresh_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    def write(text: str) -> Path:
        path = tmp_path / "cspm-watch.yaml"
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


MINIMAL = """
    targets:
      - name: production
        token_env: DO_TOKEN
"""


# ---------------------------------------------------------------------------------------------
# Loading valid files


def test_load_settings_example_file() -> None:
    environ = {
        "DIGITALOCEAN_TOKEN": fresh_secret(),
        "SLACK_BOT_TOKEN": fresh_secret(),
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/" + secrets.token_hex(8),
        "CSPM_WATCH_WEBHOOK_SECRET": fresh_webhook_secret(),
    }

    settings = load_settings(REPO_ROOT / "config" / "example.yaml", environ)

    target = settings.targets[0]
    assert target.name == "production"
    assert target.token.get_secret_value() == environ["DIGITALOCEAN_TOKEN"]
    assert target.schedule.cron == "0 */6 * * *"
    assert target.alerts.notifiers == ["security", "soc"]
    assert isinstance(settings.notifiers["security"], SlackNotifierSettings)
    assert isinstance(settings.notifiers["pager"], SlackWebhookNotifierSettings)
    assert settings.notifiers["pager"].min_severity is Severity.CRITICAL
    assert isinstance(settings.notifiers["soc"], WebhookNotifierSettings)
    assert settings.notifiers["soc"].secret is not None
    assert isinstance(settings.notifiers["stdout"], ConsoleNotifierSettings)
    assert settings.mutes[0].expires_at == datetime(2027, 1, 31, tzinfo=UTC)


def test_load_settings_demo_file() -> None:
    settings = load_settings(REPO_ROOT / "config" / "demo.yaml", {"CSPM_WATCH_DEMO_TOKEN": "t" * 8})

    assert settings.api_url == "http://127.0.0.1:8089"
    assert settings.targets[0].schedule.interval_s == 300


def test_load_settings_defaults(write_config: WriteConfig) -> None:
    settings = load_settings(write_config(MINIMAL), {"DO_TOKEN": fresh_secret()})

    target = settings.targets[0]
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.api_url == DEFAULT_API_URL
    assert (settings.listen_host, settings.listen_port) == ("0.0.0.0", 8080)  # noqa: S104
    assert settings.log_level == "INFO"
    assert settings.migrate_on_start is True
    assert settings.retention.scan_details_days == 90
    assert settings.dispatch.interval_s == 30
    assert target.schedule.cron == DEFAULT_CRON
    assert str(target.schedule.zone) == "UTC"
    assert (target.poll.initial_interval_s, target.poll.max_interval_s) == (5, 60)
    assert target.poll.timeout_s == 1800
    assert target.resource_detail_min_severity is Severity.LOW
    assert target.alerts.min_severity is Severity.HIGH
    assert target.alerts.on_first_scan is FirstScanPolicy.SUMMARY
    assert target.alerts.notify_resolved is False
    assert target.alerts.failure_alert_after == 3
    assert settings.api_url_for(target) == DEFAULT_API_URL


def test_load_settings_omitted_notifiers_mean_all(write_config: WriteConfig) -> None:
    path = write_config(
        """
        targets:
          - {name: a, token_env: DO_TOKEN}
          - {name: b, token_env: DO_TOKEN, alerts: {notifiers: []}}
        notifiers:
          one: {type: console}
          two: {type: console, min_severity: critical}
        """
    )

    settings = load_settings(path, {"DO_TOKEN": fresh_secret()})

    assert settings.targets[0].alerts.notifiers == ["one", "two"]
    assert settings.targets[1].alerts.notifiers == []


def test_load_settings_severity_any_case(write_config: WriteConfig) -> None:
    path = write_config(
        """
        targets:
          - name: a
            token_env: DO_TOKEN
            resource_detail_min_severity: medium
            alerts: {min_severity: Critical, on_first_scan: SILENT}
        """
    )

    target = load_settings(path, {"DO_TOKEN": fresh_secret()}).targets[0]

    assert target.resource_detail_min_severity is Severity.MEDIUM
    assert target.alerts.min_severity is Severity.CRITICAL
    assert target.alerts.on_first_scan is FirstScanPolicy.SILENT


def test_load_settings_environment_overrides_file(write_config: WriteConfig) -> None:
    path = write_config(
        """
        database_url: sqlite+aiosqlite:///from-file.db
        api_url: https://file.example.com
        listen: 127.0.0.1:9000
        retention: {scan_details_days: 10}
        targets:
          - name: a
            token_env: DO_TOKEN
        """
    )
    environ = {
        "DO_TOKEN": fresh_secret(),
        "CSPM_WATCH_DATABASE_URL": "postgresql://watch:pw@db.internal/watch",
        "CSPM_WATCH_API_URL": "http://127.0.0.1:8089/",
        "CSPM_WATCH_LISTEN": "[::]:9100",
        "CSPM_WATCH_RETENTION__SCAN_DETAILS_DAYS": "7",
        "CSPM_WATCH_MIGRATE_ON_START": "false",
    }

    settings = load_settings(path, environ)

    assert settings.database_url == "postgresql+psycopg://watch:pw@db.internal/watch"
    assert settings.api_url == "http://127.0.0.1:8089"
    assert (settings.listen_host, settings.listen_port) == ("::", 9100)
    assert settings.retention.scan_details_days == 7
    assert settings.migrate_on_start is False


def test_load_settings_token_file_relative_to_config(write_config: WriteConfig) -> None:
    path = write_config(
        """
        targets:
          - name: a
            token_file: secrets/do-token
        """
    )
    token = fresh_secret()
    (path.parent / "secrets").mkdir()
    (path.parent / "secrets" / "do-token").write_text(token + "\n", encoding="utf-8")

    target = load_settings(path, {}).targets[0]

    assert target.token.get_secret_value() == token
    assert target.token_file is not None
    assert target.token_file.reference == str(path.parent / "secrets" / "do-token")


def test_load_settings_path_from_environment(write_config: WriteConfig) -> None:
    path = write_config(MINIMAL)

    settings = load_settings(None, {"CSPM_WATCH_CONFIG": str(path), "DO_TOKEN": fresh_secret()})

    assert settings.targets[0].name == "production"


def test_load_settings_registers_secrets_for_redaction(write_config: WriteConfig) -> None:
    token = fresh_secret()

    load_settings(write_config(MINIMAL), {"DO_TOKEN": token})

    assert redact_text(f"request with {token} failed") == f"request with {REDACTED} failed"


# ---------------------------------------------------------------------------------------------
# Without a configuration file


def test_load_settings_without_file_uses_console() -> None:
    token = fresh_secret()

    settings = load_settings(None, {"DIGITALOCEAN_TOKEN": token})

    assert [target.name for target in settings.targets] == ["default"]
    assert settings.targets[0].token.get_secret_value() == token
    assert settings.targets[0].schedule.cron == DEFAULT_CRON
    assert list(settings.notifiers) == ["console"]
    assert settings.targets[0].alerts.notifiers == ["console"]


def test_load_settings_without_file_builds_notifiers() -> None:
    environ = {
        "DIGITALOCEAN_TOKEN": fresh_secret(),
        "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/" + secrets.token_hex(8),
        "SLACK_BOT_TOKEN": fresh_secret(),
        "CSPM_WATCH_SLACK_CHANNEL": "#security",
        "CSPM_WATCH_WEBHOOK_URL": "http://127.0.0.1:9999/hook",
        "CSPM_WATCH_WEBHOOK_SECRET": fresh_webhook_secret(),
    }

    settings = load_settings(None, environ)

    slack = settings.notifiers["slack"]
    webhook = settings.notifiers["webhook"]
    slack_webhook = settings.notifiers["slack-webhook"]
    assert isinstance(slack, SlackNotifierSettings)
    assert slack.channel == "#security"
    assert slack.token.get_secret_value() == environ["SLACK_BOT_TOKEN"]
    assert isinstance(webhook, WebhookNotifierSettings)
    assert webhook.url == "http://127.0.0.1:9999/hook"
    assert webhook.secret is not None
    assert webhook.secret.get_secret_value() == environ["CSPM_WATCH_WEBHOOK_SECRET"]
    assert isinstance(slack_webhook, SlackWebhookNotifierSettings)
    assert slack_webhook.url.get_secret_value() == environ["SLACK_WEBHOOK_URL"]
    assert "console" not in settings.notifiers


def test_load_settings_without_file_or_token() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(None, {})

    assert "DIGITALOCEAN_TOKEN is not set" in str(raised.value)
    assert "--config" in str(raised.value)


def test_load_settings_without_file_incomplete_notifiers() -> None:
    environ = {
        "DIGITALOCEAN_TOKEN": fresh_secret(),
        "SLACK_BOT_TOKEN": fresh_secret(),
        "CSPM_WATCH_WEBHOOK_SECRET": fresh_webhook_secret(),
    }

    with pytest.raises(ConfigError) as raised:
        load_settings(None, environ)

    message = str(raised.value)
    assert "CSPM_WATCH_SLACK_CHANNEL is not" in message
    assert "CSPM_WATCH_WEBHOOK_URL is not" in message
    for value in environ.values():
        assert value not in message


# ---------------------------------------------------------------------------------------------
# Errors: every kind names the key path, and no secret appears in the message


# Each case: the YAML, extra environment, the key path and a fragment of the expected message.
ERROR_CASES = {
    "invalid type": (
        "targets: [{name: a, token_env: DO_TOKEN, poll: {timeout_s: soon}}]",
        {},
        "targets[0].poll.timeout_s",
        "should be a valid number, unable to parse string as a number (got 'soon'); write a number",
    ),
    "unknown top-level key": (
        "colour: blue\ntargets: [{name: a, token_env: DO_TOKEN}]",
        {},
        "colour",
        "unknown key; remove it or correct its spelling (allowed: api_url, database_url",
    ),
    "unknown nested key": (
        "targets: [{name: a, token_env: DO_TOKEN, schedule: {cron: '0 * * * *', tz: UTC}}]",
        {},
        "targets[0].schedule.tz",
        "(allowed: cron, interval_s, timezone)",
    ),
    "secret under an unknown key": (
        "token: SECRET\ntargets: [{name: a, token_env: DO_TOKEN}]",
        {},
        "token",
        "unknown key",
    ),
    "missing secret variable": (
        "targets: [{name: a, token_env: NOT_SET_ANYWHERE}]",
        {},
        "targets[0].token_env",
        "environment variable NOT_SET_ANYWHERE is not set",
    ),
    "empty secret variable": (
        "targets: [{name: a, token_env: EMPTY}]",
        {"EMPTY": "  "},
        "targets[0].token_env",
        "environment variable EMPTY is empty",
    ),
    "secret in place of the variable name": (
        "targets: [{name: a, token_env: 'SECRET'}]",
        {},
        "targets[0].token_env",
        "environment variable **** is not set",
    ),
    "dashed secret in place of the variable name": (
        "targets: [{name: a, token_env: 'tok-SECRET'}]",
        {},
        "targets[0].token_env",
        "expected the name of an environment variable",
    ),
    "missing secret file": (
        "targets: [{name: a, token_file: /nonexistent/do-token}]",
        {},
        "targets[0].token_file",
        "secret file /nonexistent/do-token does not exist",
    ),
    "secret file is a directory": (
        "targets: [{name: a, token_file: /}]",
        {},
        "targets[0].token_file",
        "is a directory",
    ),
    "token_env with token_file": (
        "targets: [{name: a, token_env: DO_TOKEN, token_file: /run/secrets/do}]",
        {},
        "targets[0]",
        "token_env and token_file are mutually exclusive",
    ),
    "neither token_env nor token_file": (
        "targets: [{name: a}]",
        {},
        "targets[0]",
        "set one of token_env or token_file",
    ),
    "cron with interval_s": (
        "targets: [{name: a, token_env: DO_TOKEN, schedule: {cron: '0 * * * *', interval_s: 60}}]",
        {},
        "targets[0].schedule",
        "cron and interval_s are mutually exclusive",
    ),
    "timezone with interval_s": (
        "targets: [{name: a, token_env: DO_TOKEN, schedule: {interval_s: 60, timezone: UTC}}]",
        {},
        "targets[0].schedule",
        "timezone and interval_s are mutually exclusive",
    ),
    "secret_env with secret_file": (
        "targets: [{name: a, token_env: DO_TOKEN}]\n"
        "notifiers: {soc: {type: webhook, url: 'https://soc.example.com/hook', "
        "secret_env: HOOK_SECRET, secret_file: /run/secrets/hook}}",
        {},
        "notifiers.soc",
        "secret_env and secret_file are mutually exclusive",
    ),
    "unknown notifier reference": (
        "targets: [{name: a, token_env: DO_TOKEN, alerts: {notifiers: [stdout, pager]}}]\n"
        "notifiers: {stdout: {type: console}}",
        {},
        "targets[0].alerts.notifiers[1]",
        "notifier 'pager' is not defined: define it under notifiers or use one of the "
        "defined names (stdout)",
    ),
    "duplicate target name": (
        "targets: [{name: a, token_env: DO_TOKEN}, {name: a, token_env: DO_TOKEN}]",
        {},
        "targets[1].name",
        "already used by targets[0]",
    ),
    "unknown mute target": (
        "targets: [{name: a, token_env: DO_TOKEN}]\n"
        "mutes: [{resource_urn: 'do:droplet:1', reason: test, target: b}]",
        {},
        "mutes[0].target",
        "target 'b' is not defined",
    ),
    "cron with four fields": (
        "targets: [{name: a, token_env: DO_TOKEN, schedule: {cron: '0 */6 * *'}}]",
        {},
        "targets[0].schedule.cron",
        "invalid cron expression '0 */6 * *': it has 4 fields",
    ),
    "cron value out of range": (
        "targets: [{name: a, token_env: DO_TOKEN, schedule: {cron: '61 * * * *'}}]",
        {},
        "targets[0].schedule.cron",
        "higher than the maximum value (59)",
    ),
    "cron restricting both day fields": (
        "targets: [{name: a, token_env: DO_TOKEN, schedule: {cron: '0 9 1 * mon'}}]",
        {},
        "targets[0].schedule.cron",
        "restricts both day-of-month and day-of-week",
    ),
    "bad timezone": (
        "targets: [{name: a, token_env: DO_TOKEN, "
        "schedule: {cron: '0 9 * * *', timezone: Europe/Berln}}]",
        {},
        "targets[0].schedule.timezone",
        "unknown time zone 'Europe/Berln': use an IANA name",
    ),
    "bad api URL": (
        "api_url: api.digitalocean.com\ntargets: [{name: a, token_env: DO_TOKEN}]",
        {},
        "api_url",
        "'api.digitalocean.com' is not an http(s) URL",
    ),
    "api_url with a password": (
        "api_url: 'https://user:SECRET@api.example.com'\ntargets: [{name: a, token_env: DO_TOKEN}]",
        {},
        "api_url",
        "contains a user name or password",
    ),
    "api_url with a query": (
        "api_url: 'https://api.example.com/?api_key=SECRET'\n"
        "targets: [{name: a, token_env: DO_TOKEN}]",
        {},
        "api_url",
        "has a query or fragment",
    ),
    "token with a line break inside": (
        "targets: [{name: a, token_env: BROKEN_TOKEN}]",
        {"BROKEN_TOKEN": "SECRET\nSECRET"},
        "targets[0].token_env",
        "contains whitespace or a line break inside the secret",
    ),
    "bad webhook URL": (
        "targets: [{name: a, token_env: DO_TOKEN}]\n"
        "notifiers: {soc: {type: webhook, url: 'ftp://soc.example.com/hook', secret_env: HOOK}}",
        {"HOOK": "whsec_" + "A" * 32},
        "notifiers.soc.url",
        "is not an http(s) URL",
    ),
    "secret in webhook URL": (
        "targets: [{name: a, token_env: DO_TOKEN}]\n"
        "notifiers: {soc: {type: webhook, url: 'gopher://user:SECRET@soc.example.com/?k=SECRET', "
        "secret_env: HOOK}}",
        {"HOOK": "whsec_" + "A" * 32},
        "notifiers.soc.url",
        "@soc.example.com/?k=****' is not an http(s) URL",
    ),
    "bad Slack webhook URL in a variable": (
        "targets: [{name: a, token_env: DO_TOKEN}]\n"
        "notifiers: {pager: {type: slack_webhook, url_env: HOOK_URL}}",
        {"HOOK_URL": "SECRET"},
        "notifiers.pager.url_env",
        "environment variable HOOK_URL does not contain an http(s) URL",
    ),
    "webhook secret without whsec_": (
        "targets: [{name: a, token_env: DO_TOKEN}]\n"
        "notifiers: {soc: {type: webhook, url: 'https://soc.example.com', secret_env: HOOK}}",
        {"HOOK": "SECRET"},
        "notifiers.soc.secret_env",
        "does not start with whsec_",
    ),
    "webhook secret too short": (
        "targets: [{name: a, token_env: DO_TOKEN}]\n"
        "notifiers: {soc: {type: webhook, url: 'https://soc.example.com', secret_env: HOOK}}",
        {"HOOK": "whsec_" + base64.b64encode(b"0123456789").decode()},
        "notifiers.soc.secret_env",
        "decodes to 10 bytes",
    ),
    "bad listen address": (
        "listen: '8080'\ntargets: [{name: a, token_env: DO_TOKEN}]",
        {},
        "listen",
        "invalid listen address '8080'",
    ),
    "bad listen address from the environment": (
        "targets: [{name: a, token_env: DO_TOKEN}]",
        {"CSPM_WATCH_LISTEN": "localhost"},
        "listen (from CSPM_WATCH_LISTEN)",
        "invalid listen address 'localhost'",
    ),
    "database password in a bad URL": (
        "database_url: 'mysql://watch:SECRET@db/watch'\ntargets: [{name: a, token_env: DO_TOKEN}]",
        {},
        "database_url",
        "unsupported database URL scheme 'mysql'",
    ),
    "database URL without a scheme": (
        "database_url: 'watch:SECRET@db/watch'\ntargets: [{name: a, token_env: DO_TOKEN}]",
        {},
        "database_url",
        "invalid database URL '****': write it as sqlite+aiosqlite:///path.db",
    ),
    "unknown notifier type": (
        "targets: [{name: a, token_env: DO_TOKEN}]\nnotifiers: {mail: {type: email}}",
        {},
        "notifiers.mail",
        "set type to one of slack, slack_webhook, webhook, console",
    ),
    "unquoted Slack channel": (
        "targets: [{name: a, token_env: DO_TOKEN}]\n"
        "notifiers: {chat: {type: slack, token_env: DO_TOKEN, channel: security}}",
        {},
        "notifiers.chat.channel",
        "invalid Slack channel 'security'",
    ),
    "bad target name": (
        "targets: [{name: Production, token_env: DO_TOKEN}]",
        {},
        "targets[0].name",
        "invalid name 'Production'",
    ),
    "no targets": (
        "targets: []",
        {},
        "targets",
        "add at least one item",
    ),
    "naive mute expiry": (
        "targets: [{name: a, token_env: DO_TOKEN}]\n"
        "mutes: [{rule_uuid: 760e09ef-dc84-11e8-981e-3cfdfeaae000, reason: x, "
        "expires_at: 2027-01-31T00:00:00}]",
        {},
        "mutes[0].expires_at",
        "add Z or an offset",
    ),
    "mute without subject": (
        "targets: [{name: a, token_env: DO_TOKEN}]\nmutes: [{reason: accepted}]",
        {},
        "mutes[0]",
        "a mute needs rule_uuid, resource_urn or both",
    ),
    "invalid YAML": (
        "targets:\n  - name: a\n    token_env: SECRET\n    schedule: {cron: '0 * * * *'\n  - x\n",
        {},
        "invalid YAML at line 5, column 3",
        "expected ',' or '}'",
    ),
    "duplicate YAML key": (
        "targets: [{name: a, token_env: DO_TOKEN}]\ntargets: []\n",
        {},
        "invalid YAML at line 2, column 1",
        "duplicate key 'targets' (first at line 1)",
    ),
}


@pytest.mark.parametrize(
    ("text", "extra_environ", "key_path", "expected"),
    list(ERROR_CASES.values()),
    ids=list(ERROR_CASES),
)
def test_load_settings_error_names_key_and_fix(
    write_config: WriteConfig,
    text: str,
    extra_environ: dict[str, str],
    key_path: str,
    expected: str,
) -> None:
    secret = fresh_secret()
    text = text.replace("SECRET", secret)
    environ = {"DO_TOKEN": fresh_secret()} | {
        name: value.replace("SECRET", secret) for name, value in extra_environ.items()
    }

    with pytest.raises(ConfigError) as raised:
        load_settings(write_config(text), environ)

    message = str(raised.value)
    assert f"  - {key_path}" in message
    assert expected in message
    assert secret not in message
    assert environ["DO_TOKEN"] not in message


def test_load_settings_error_lists_every_problem(write_config: WriteConfig) -> None:
    path = write_config(
        """
        listen: nowhere
        targets:
          - name: a
            token_env: NOT_SET
            schedule: {cron: "0 25 * * *"}
          - name: b
            token_env: DO_TOKEN
            poll: {initial_interval_s: 120}
        notifiers:
          soc: {type: webhook, secret_env: HOOK}
        """
    )

    with pytest.raises(ConfigError) as raised:
        load_settings(path, {"DO_TOKEN": fresh_secret(), "HOOK": fresh_webhook_secret()})

    message = str(raised.value)
    assert message.startswith(f"invalid configuration (configuration file {path}), 5 problems:")
    assert "  - listen:" in message
    assert "  - targets[0].token_env:" in message
    assert "  - targets[0].schedule.cron:" in message
    assert "  - targets[1].poll: initial_interval_s (120) is above max_interval_s (60)" in message
    assert "  - notifiers.soc.url: Field required; add this key" in message


def test_load_settings_deeply_nested_yaml(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")

    with pytest.raises(ConfigError) as raised:
        load_settings(path, {})

    assert "nested too deeply" in str(raised.value)


def test_load_settings_webhook_without_secret(write_config: WriteConfig) -> None:
    path = write_config(
        """
        targets: [{name: a, token_env: DO_TOKEN}]
        notifiers: {soc: {type: webhook, url: "https://soc.example.com/hook"}}
        """
    )

    with pytest.raises(ConfigError) as raised:
        load_settings(path, {"DO_TOKEN": fresh_secret()})

    assert "  - notifiers.soc: set one of secret_env or secret_file" in str(raised.value)


def test_load_settings_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(tmp_path / "missing.yaml", {})

    assert "missing.yaml does not exist: correct --config or CSPM_WATCH_CONFIG" in str(raised.value)


def test_load_settings_yaml_error_hides_line_text(write_config: WriteConfig) -> None:
    secret = fresh_secret()
    path = write_config(f"targets:\n  - name: a\n  token_env: {secret}\n     bad: [\n")

    with pytest.raises(ConfigError) as raised:
        load_settings(path, {})

    assert "invalid YAML at line" in str(raised.value)
    assert secret not in str(raised.value)


def test_load_settings_unparsable_environment_list(write_config: WriteConfig) -> None:
    environ = {"DO_TOKEN": fresh_secret(), "CSPM_WATCH_TARGETS": "[not json"}

    with pytest.raises(ConfigError) as raised:
        load_settings(write_config(MINIMAL), environ)

    assert "CSPM_WATCH_TARGETS could not be parsed: write lists and mappings as JSON" in str(
        raised.value
    )


# ---------------------------------------------------------------------------------------------
# Cron expressions


@pytest.mark.parametrize(
    ("expression", "day_of_week"),
    [
        ("0 9 * * 0", "sun"),
        ("0 9 * * 7", "sun"),
        ("0 9 * * 1-5", "mon,tue,wed,thu,fri"),
        ("0 9 * * 5-7", "sun,fri,sat"),
        ("0 9 * * */2", "sun,tue,thu,sat"),
        ("0 9 * * MON,wed", "mon,wed"),
        ("0 9 * * *", "*"),
        ("@weekly", "sun"),
    ],
)
def test_parse_cron_weekdays_follow_crontab(expression: str, day_of_week: str) -> None:
    assert parse_cron(expression)["day_of_week"] == day_of_week


def test_parse_cron_macro() -> None:
    fields = parse_cron("@daily")

    assert (fields["minute"], fields["hour"], fields["day"]) == ("0", "0", "*")


@pytest.mark.parametrize("expression", ["0 9 * * 8", "0 9 * * fri-mon", "0 9 * * */0", "@reboot"])
def test_parse_cron_rejects_invalid(expression: str) -> None:
    with pytest.raises(ValueError, match="invalid cron expression"):
        parse_cron(expression)


# ---------------------------------------------------------------------------------------------
# Masking


def test_masked_dict_hides_secrets(write_config: WriteConfig) -> None:
    password = fresh_secret()
    query_secret = fresh_secret()
    path = write_config(
        f"""
        database_url: postgresql+psycopg://watch:{password}@db/watch
        targets:
          - {{name: a, token_env: DO_TOKEN}}
        notifiers:
          soc:
            type: webhook
            url: "https://soc.example.com/hook?key={query_secret}"
            secret_env: HOOK
        """
    )
    token = fresh_secret()

    data = load_settings(path, {"DO_TOKEN": token, "HOOK": fresh_webhook_secret()}).masked_dict()

    text = json.dumps(data)
    assert data["database_url"] == "postgresql+psycopg://watch:****@db/watch"
    assert data["notifiers"]["soc"]["url"] == "https://soc.example.com/hook?key=****"
    assert data["targets"][0]["token_env"] == "DO_TOKEN"
    for secret in (password, query_secret, token):
        assert secret not in text


# ---------------------------------------------------------------------------------------------
# cspm-watch config check


def invoke_config_check(path: Path, environ: dict[str, str], *args: str) -> tuple[int, str, str]:
    runner = CliRunner()
    result = runner.invoke(cli, ["--config", str(path), "config", "check", *args], env=environ)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.stdout, result.stderr


def test_config_check_prints_masked_table(write_config: WriteConfig) -> None:
    token = fresh_secret()
    password = fresh_secret()
    path = write_config(
        f"""
        database_url: postgresql+psycopg://watch:{password}@db/watch
        targets:
          - {{name: production, token_env: DO_TOKEN, schedule: {{cron: "0 9 * * *"}}}}
        """
    )

    exit_code, stdout, stderr = invoke_config_check(path, {"DO_TOKEN": token})

    assert exit_code == 0
    assert "targets[0].name" in stdout
    assert "targets[0].schedule.cron" in stdout
    assert "postgresql+psycopg://watch:****@db/watch" in stdout
    assert token not in stdout + stderr
    assert password not in stdout + stderr


def test_config_check_prints_json(write_config: WriteConfig) -> None:
    token = fresh_secret()

    exit_code, stdout, _ = invoke_config_check(
        write_config(MINIMAL), {"DO_TOKEN": token}, "--output", "json"
    )

    assert exit_code == 0
    assert json.loads(stdout)["targets"][0]["token_env"] == "DO_TOKEN"
    assert token not in stdout


@pytest.mark.parametrize(
    ("text", "extra_environ", "key_path", "expected"),
    list(ERROR_CASES.values()),
    ids=list(ERROR_CASES),
)
def test_config_check_error_exits_2_without_secrets(
    write_config: WriteConfig,
    text: str,
    extra_environ: dict[str, str],
    key_path: str,
    expected: str,
) -> None:
    secret = fresh_secret()
    token = fresh_secret()
    environ = {"DO_TOKEN": token} | {
        name: value.replace("SECRET", secret) for name, value in extra_environ.items()
    }

    exit_code, stdout, stderr = invoke_config_check(
        write_config(text.replace("SECRET", secret)), environ
    )

    assert exit_code == 2
    assert stdout == ""
    assert f"  - {key_path}" in stderr
    assert expected in stderr
    assert "Traceback" not in stderr
    assert secret not in stdout + stderr
    assert token not in stdout + stderr


def unreadable_file_command(path: Path) -> list[str]:
    """Return a command that runs `config check` as a user who cannot read `path`.

    Root can read any file, so as root the command runs as the user nobody (uid 65534).
    """
    command = [sys.executable, "-m", "service", "--config", str(path), "config", "check"]
    if os.geteuid() != 0:
        return command
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]


def test_config_check_unreadable_secret_file() -> None:
    token = fresh_secret()
    # pytest's tmp_path sits below a directory that only its owner can enter.
    with tempfile.TemporaryDirectory() as directory:
        base = Path(directory)
        base.chmod(0o755)
        secret_path = base / "do-token"
        secret_path.write_text(token, encoding="utf-8")
        secret_path.chmod(0o000)
        config_path = base / "cspm-watch.yaml"
        config_path.write_text(f"targets: [{{name: a, token_file: {secret_path}}}]\n")
        config_path.chmod(0o644)

        result = subprocess.run(
            unreadable_file_command(config_path),
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env={"PATH": os.environ["PATH"], "HOME": directory},
            check=False,
        )

    assert result.returncode == 2, result.stderr
    assert f"targets[0].token_file: secret file {secret_path} is not readable" in result.stderr
    assert "Traceback" not in result.stderr
    assert token not in result.stdout + result.stderr
