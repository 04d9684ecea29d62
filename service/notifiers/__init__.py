"""Notifiers (Slack, Slack webhook, webhook, console), message rendering and the dispatcher.

The cycle hands an `AlertBatch` to `render_deliveries` for each notifier and stores the
resulting messages as delivery rows; the dispatcher sends the rows later.
"""

from service.notifiers.base import Notifier, OutboxMessage, PayloadFormat
from service.notifiers.console import ConsoleNotifier
from service.notifiers.content import AlertBatch, AlertItem, AlertReason, BatchKind, RuleCount
from service.notifiers.render import render_deliveries
from service.notifiers.slack import SlackNotifier
from service.notifiers.slack_webhook import SlackWebhookNotifier
from service.notifiers.webhook import WebhookNotifier

__all__ = [
    "AlertBatch",
    "AlertItem",
    "AlertReason",
    "BatchKind",
    "ConsoleNotifier",
    "Notifier",
    "OutboxMessage",
    "PayloadFormat",
    "RuleCount",
    "SlackNotifier",
    "SlackWebhookNotifier",
    "WebhookNotifier",
    "render_deliveries",
]
