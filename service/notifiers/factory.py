"""Build notifiers from the validated configuration."""

from __future__ import annotations

from collections.abc import Mapping

from service.config import (
    ConsoleNotifierSettings,
    NotifierSettings,
    SlackNotifierSettings,
    SlackWebhookNotifierSettings,
    WebhookNotifierSettings,
)
from service.notifiers.base import Notifier
from service.notifiers.console import ConsoleNotifier
from service.notifiers.slack import SlackNotifier
from service.notifiers.slack_webhook import SlackWebhookNotifier
from service.notifiers.webhook import WebhookNotifier


def build_notifiers(settings: Mapping[str, NotifierSettings]) -> dict[str, Notifier]:
    """Build one notifier per configured name, with its secrets resolved."""
    return {name: build_notifier(name, entry) for name, entry in settings.items()}


def build_notifier(name: str, settings: NotifierSettings) -> Notifier:
    if isinstance(settings, SlackNotifierSettings):
        return SlackNotifier(
            name,
            token=settings.token.get_secret_value(),
            channel=settings.channel,
            api_url=str(settings.api_url),
            min_severity=settings.min_severity,
        )
    if isinstance(settings, SlackWebhookNotifierSettings):
        return SlackWebhookNotifier(
            name, url=settings.url.get_secret_value(), min_severity=settings.min_severity
        )
    if isinstance(settings, WebhookNotifierSettings):
        secret = settings.secret
        return WebhookNotifier(
            name,
            url=str(settings.url),
            secret=secret.get_secret_value(),
            min_severity=settings.min_severity,
            timeout_s=settings.timeout_s,
        )
    if isinstance(settings, ConsoleNotifierSettings):
        return ConsoleNotifier(name, min_severity=settings.min_severity)
    raise TypeError(f"notifier {name!r}: unknown settings type {type(settings).__name__}")
