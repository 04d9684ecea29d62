"""Run one `dispatch_pending` in its own process, for the test that kills it mid-delivery.

Usage: python -m tests.notifiers.dispatch_process DATABASE_URL WEBHOOK_URL [CLOCK_OFFSET_S]

The webhook notifier is named `soc`; its signing secret comes from the variable
CSPM_WATCH_TEST_WEBHOOK_SECRET so that it never appears in a command line. CLOCK_OFFSET_S moves
the dispatcher's clock forward, standing in for the time a restarted process would wait until
an abandoned claim expires. The report is printed as one JSON line on standard output.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from datetime import UTC, datetime, timedelta

from service.logging import configure_logging
from service.notifiers.dispatcher import Dispatcher
from service.notifiers.webhook import WebhookNotifier
from service.storage import create_engine, create_sessionmaker

SECRET_VARIABLE = "CSPM_WATCH_TEST_WEBHOOK_SECRET"


async def dispatch_once(database_url: str, webhook_url: str, clock_offset_s: float) -> None:
    engine = create_engine(database_url)
    notifier = WebhookNotifier("soc", url=webhook_url, secret=os.environ[SECRET_VARIABLE])
    offset = timedelta(seconds=clock_offset_s)
    dispatcher = Dispatcher(
        create_sessionmaker(engine),
        {"soc": notifier},
        max_wait_s=0.0,
        clock=lambda: datetime.now(UTC) + offset,
    )
    try:
        report = await dispatcher.dispatch_pending()
    finally:
        await notifier.aclose()
        await engine.dispose()
    print(json.dumps(dataclasses.asdict(report)), flush=True)


def main(arguments: list[str]) -> None:
    configure_logging(level="INFO", json=True)
    database_url, webhook_url = arguments[0], arguments[1]
    clock_offset_s = float(arguments[2]) if len(arguments) > 2 else 0.0
    asyncio.run(dispatch_once(database_url, webhook_url, clock_offset_s))


if __name__ == "__main__":
    main(sys.argv[1:])
