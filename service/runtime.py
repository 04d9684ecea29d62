"""The running service: build its parts from the settings, run `once` or the daemon, stop cleanly.

`Runtime` owns the database engine, one API client per target (each with its own token and
rate limiter), the notifiers and the dispatcher. `run_once` and `run_daemon` are the two ways
the service runs. Both stop on SIGTERM or SIGINT. Then no new work starts, and a poll in flight
is abandoned, so its scan stays resumable. Leases are released and the database is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from service import __version__, metrics
from service.alerting import Mute
from service.config import Settings, TargetSettings
from service.digitalocean.client import SecurityClient
from service.errors import ConfigError, StorageError
from service.logging import redact_text
from service.notifiers.base import Notifier
from service.notifiers.dispatcher import SERVICE_RETRY_WINDOW_S, Dispatcher, DispatchReport
from service.notifiers.factory import build_notifiers
from service.scanning.cycle import CycleEnvironment, CycleResult, run_cycle
from service.scanning.lease import new_holder_id
from service.storage import create_engine, create_sessionmaker, mask_database_url, upgrade_database
from service.storage.deliveries import prune_deliveries
from service.storage.retention import prune_scan_details

log = structlog.get_logger(__name__)

# Exit codes of `cspm-watch once` and `run`.
EXIT_OK = 0
EXIT_CYCLE_FAILED = 1
EXIT_CONFIG_ERROR = 2
EXIT_DATABASE_ERROR = 3
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

# Scans whose details one retention transaction deletes.
PRUNE_BATCH_SCANS = 5


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Runtime:
    """Everything a cycle, the dispatcher and the retention job share in one process."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    clients: dict[str, SecurityClient]
    notifiers: dict[str, Notifier]
    dispatcher: Dispatcher
    holder: str = field(default_factory=new_holder_id)
    results: list[CycleResult] = field(default_factory=list)
    # Tasks of scheduled jobs now running, so that shutdown can cancel exactly these.
    running: set[asyncio.Task[object]] = field(default_factory=set)

    @contextlib.contextmanager
    def _tracked(self) -> Iterator[None]:
        task = asyncio.current_task()
        if task is not None:
            self.running.add(task)
        try:
            yield
        finally:
            self.running.discard(task)

    def environment(
        self, target: TargetSettings, slot_started_at: datetime | None = None
    ) -> CycleEnvironment:
        return CycleEnvironment(
            sessions=self.sessions,
            client=self.clients[target.name],
            notifiers=self.notifiers,
            holder=self.holder,
            mutes=mutes_of(self.settings),
            now=utc_now,
            slot_started_at=slot_started_at,
        )

    async def run_target(
        self, target: TargetSettings, slot_started_at: datetime | None = None
    ) -> CycleResult:
        result = await run_cycle(target, self.environment(target, slot_started_at))
        self.results.append(result)
        metrics.record_cycle(result, ended_at_s=utc_now().timestamp())
        return result

    async def run_target_and_dispatch(self, target: TargetSettings) -> CycleResult:
        """Run one scheduled cycle, then send what it enqueued without waiting for the
        dispatch job. The cycle is skipped when the target already has a scan of this
        schedule slot, for example from another replica."""
        from service.scheduler import slot_started_at

        with self._tracked():
            result = await self.run_target(target, slot_started_at(target.schedule, utc_now()))
            if result.deliveries_enqueued:
                await self.dispatch()
            return result

    async def dispatch(self) -> DispatchReport:
        with self._tracked():
            report = await self.dispatcher.dispatch_pending()
        log.debug("dispatch_finished", report=str(report))
        return report

    async def prune(self) -> None:
        with self._tracked():
            await self._prune()

    async def _prune(self) -> None:
        # Small batches keep each transaction short, so SQLite writers wait for one batch.
        older_than = utc_now() - timedelta(days=self.settings.retention.scan_details_days)
        while True:
            async with self.sessions.begin() as session:
                result = await prune_scan_details(
                    session, older_than=older_than, max_scans=PRUNE_BATCH_SCANS
                )
            if result.scans < PRUNE_BATCH_SCANS:
                break
        deliveries_older_than = utc_now() - timedelta(days=self.settings.retention.deliveries_days)
        async with self.sessions.begin() as session:
            deleted = await prune_deliveries(session, older_than=deliveries_older_than)
        if deleted:
            log.info(
                "deliveries_pruned",
                deleted=deleted,
                older_than=deliveries_older_than.isoformat(),
            )


def mutes_of(settings: Settings) -> list[Mute]:
    return [
        Mute(
            reason=mute.reason,
            rule_uuid=mute.rule_uuid,
            resource_urn=mute.resource_urn,
            target=mute.target,
            expires_at=mute.expires_at,
        )
        for mute in settings.mutes
    ]


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings, *, migrate: bool | None = None, connect: bool = True
) -> AsyncIterator[Runtime]:
    """Open the database (migrating it when configured to), the clients and the notifiers.

    Raises StorageError, naming the database and the likely fix, when the database is
    unreachable or cannot be migrated, before any other work. `connect=False` skips that check, for
    readers that must not create a SQLite file.
    """
    migrating = migrate if migrate is not None else settings.migrate_on_start
    if migrating:
        await _describe_database_errors(settings, upgrade_database(settings.database_url))
    engine = create_engine(settings.database_url)
    sessions = create_sessionmaker(engine)
    notifiers = build_notifiers(settings.notifiers)
    clients = {target.name: _client_for(settings, target) for target in settings.targets}
    runtime = Runtime(
        settings=settings,
        engine=engine,
        sessions=sessions,
        clients=clients,
        notifiers=notifiers,
        dispatcher=Dispatcher(sessions, notifiers, retry_window_s=SERVICE_RETRY_WINDOW_S),
    )
    try:
        if connect and not migrating:
            # Migrating connects already; without it, nothing else would notice an
            # unreachable database until the first cycle.
            await _describe_database_errors(settings, _check_database_answers(engine))
        for client in clients.values():
            await client.open()
        yield runtime
    finally:
        for client in clients.values():
            await client.close()
        for notifier in notifiers.values():
            await notifier.aclose()
        await engine.dispose()


async def _describe_database_errors(settings: Settings, work: Awaitable[object]) -> None:
    """Await `work`; turn a database error into a StorageError that names the database."""
    try:
        await work
    except SQLAlchemyError as error:
        cause = getattr(error, "orig", None) or error
        first_line = (str(cause) or type(cause).__name__).splitlines()[0]
        raise StorageError(
            f"cannot open the database {mask_database_url(settings.database_url)}: "
            f"{redact_text(first_line)}; check that the server answers, the credentials are "
            "right and, for SQLite, that the file and its directory are writable"
        ) from None


async def _check_database_answers(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


def _client_for(settings: Settings, target: TargetSettings) -> SecurityClient:
    return SecurityClient(
        target.token,
        api_url=str(target.api_url or settings.api_url),
        on_response=metrics.api_response_recorder(target.name),
    )


def select_targets(settings: Settings, names: Sequence[str]) -> list[TargetSettings]:
    """Return the targets called `names`, or every target when `names` is empty."""
    if not names:
        return list(settings.targets)
    known = {target.name: target for target in settings.targets}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(
            f"unknown target {', '.join(map(repr, unknown))}: configured targets are "
            f"{', '.join(sorted(known))}"
        )
    return [known[name] for name in names]


async def run_once(settings: Settings, target_names: Sequence[str] = ()) -> int:
    """Run one cycle per selected target concurrently, dispatch, and return the exit code."""
    targets = select_targets(settings, target_names)
    log.info("once_started", version=__version__, targets=[t.name for t in targets])
    async with open_runtime(settings) as runtime:
        results = await asyncio.gather(*(runtime.run_target(target) for target in targets))
        report = await runtime.dispatch()
    failed = [result.target for result in results if not result.status.succeeded]
    log.info(
        "once_finished",
        targets=len(results),
        failed=failed,
        deliveries_sent=report.sent,
        deliveries_retrying=report.retried,
        deliveries_failed=report.failed,
    )
    # A delivery that gave up means people did not hear an alert: a CronJob, which has no
    # metrics endpoint, must show that as a failed run. Deliveries still being retried are
    # sent by a later run and do not fail this one.
    return EXIT_CYCLE_FAILED if failed or report.failed else EXIT_OK


async def run_daemon(settings: Settings, *, stop: asyncio.Event) -> int:
    """Run the scheduler until `stop` is set, then shut down cleanly."""
    from service.scheduler import build_scheduler
    from service.web import WebState, serve_web

    started_at = utc_now()
    metrics.initialize_target_series(target.name for target in settings.targets)
    log.info(
        "daemon_started",
        version=__version__,
        database=mask_database_url(settings.database_url),
        targets=[target.name for target in settings.targets],
        notifiers=sorted(settings.notifiers),
    )
    async with open_runtime(settings) as runtime:
        scheduler = build_scheduler(
            settings,
            run_target=runtime.run_target_and_dispatch,
            dispatch=runtime.dispatch,
            prune=runtime.prune,
        )
        scheduler.start()
        web_state = WebState(
            settings=settings,
            engine=runtime.engine,
            sessions=runtime.sessions,
            scheduler=scheduler,
            started_at=started_at,
        )
        try:
            async with serve_web(web_state, settings.listen_host, settings.listen_port):
                await stop.wait()
        finally:
            scheduler.shutdown(wait=False)
            await _cancel(runtime.running)
    log.info("daemon_stopped")
    return EXIT_OK


async def _cancel(tasks: set[asyncio.Task[object]]) -> None:
    """Cancel the scheduled jobs still running and wait until they have ended."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


async def run_with_signals(job: str, settings: Settings, target_names: Sequence[str] = ()) -> int:
    """Run `once` or the daemon, stopping cleanly at the first SIGTERM or SIGINT.

    Returns the job's exit code, or 143 after SIGTERM and 130 after SIGINT.
    """
    loop = asyncio.get_running_loop()
    received: list[int] = []
    stop = asyncio.Event()
    if job == "run":
        task = asyncio.create_task(run_daemon(settings, stop=stop))
    else:
        task = asyncio.create_task(run_once(settings, target_names))

    def on_signal(signum: int) -> None:
        if received:
            return
        received.append(signum)
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        if job == "run":
            stop.set()
        else:
            task.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        code = await task
    except asyncio.CancelledError:
        code = EXIT_OK
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    if received:
        log.info("shutdown_finished", signal=signal.Signals(received[0]).name)
        return EXIT_SIGTERM if received[0] == signal.SIGTERM else EXIT_SIGINT
    return code
