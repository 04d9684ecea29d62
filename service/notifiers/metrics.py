"""Prometheus counters of the dispatcher, registered in the default registry."""

from __future__ import annotations

from prometheus_client import Counter

DELIVERIES_SENT = Counter(
    "cspm_watch_deliveries_sent_total",
    "Deliveries that a notifier accepted.",
    ["notifier"],
)
DELIVERY_RETRIES = Counter(
    "cspm_watch_delivery_retries_total",
    "Delivery attempts that failed and were scheduled again.",
    ["notifier"],
)
DELIVERIES_FAILED = Counter(
    "cspm_watch_deliveries_failed_total",
    "Deliveries that gave up: a final error, or the last attempt failed.",
    ["notifier"],
)
DELIVERIES_SPLIT = Counter(
    "cspm_watch_deliveries_split_total",
    "Deliveries that a receiver rejected for their size and that were split in two.",
    ["notifier"],
)
