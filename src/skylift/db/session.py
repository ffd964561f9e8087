"""Engine, sessions, and work that runs only after a transaction commits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, event, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

AfterCommit = Callable[[], Awaitable[None]]


# PostgreSQL's answers that undo a transaction which would succeed if done again: a serialization
# failure, a deadlock (another transaction waited for this one's rows while it waited for theirs).
_RETRYABLE_STATES = frozenset({"40001", "40P01"})


def is_busy(error: BaseException) -> bool:
    """The database refused a lock for now: SQLite's "database is locked" / "database is busy", or
    PostgreSQL ended the transaction as a deadlock's or a serialization failure's loser."""
    if not isinstance(error, DBAPIError):
        return False
    if getattr(error.orig, "sqlstate", None) in _RETRYABLE_STATES:
        return True
    return isinstance(error, OperationalError) and any(
        words in str(error.orig) for words in ("database is locked", "database is busy")
    )


_AFTER_COMMIT_KEY = "skylift_after_commit"
# Execution option of the engine `Database.reading` sessions use: their transactions begin deferred.
_READ_ONLY = "skylift_read_only"


@dataclass(eq=False)
class Batch:
    """One transaction shared by many units of work (see `Database.batch`)."""

    session: AsyncSession
    task: asyncio.Task[Any] | None
    savepoints: bool  # each unit in a savepoint of its own, so that a failing unit undoes only itself
    failed: bool = False  # a unit failed without a savepoint: only rolling the whole batch back undoes it


# The batch the running task is inside of.
_BATCH: ContextVar[Batch | None] = ContextVar("skylift_batch", default=None)


def _joined() -> Batch | None:
    batch = _BATCH.get()
    # A task started inside a batch inherits the variable, but not the right to use its session.
    return batch if batch is not None and batch.task is asyncio.current_task() else None


SelectT = TypeVar("SelectT", bound="Select[*tuple[Any, ...]]")


def claiming(session: AsyncSession, query: SelectT, of: Any = None) -> SelectT:
    """`query`, taking the rows it reads (or those of `of`) for this transaction: FOR UPDATE SKIP LOCKED,
    so that a replica working beside this one passes over them. SQLite has one writer at a time and no
    such clause."""
    if session.get_bind().dialect.name == "sqlite":
        return query
    return query.with_for_update(skip_locked=True, of=of)


def current_batch() -> AsyncSession | None:
    """The session of the batch this task is running inside, if any."""
    batch = _joined()
    return batch.session if batch is not None else None


def after_commit(session: AsyncSession, work: AfterCommit) -> None:
    """Queue work (a device message, a job) to run once the session's transaction has committed."""
    session.info.setdefault(_AFTER_COMMIT_KEY, []).append(work)


async def run_after_commit(session: AsyncSession) -> None:
    queued: list[AfterCommit] = session.info.pop(_AFTER_COMMIT_KEY, [])
    for work in queued:
        try:
            await work()
        except Exception:
            log.exception("post-commit work failed")


def discard_after_commit(session: AsyncSession) -> None:
    session.info.pop(_AFTER_COMMIT_KEY, None)
    session.info.pop(_SIGNALS_KEY, None)
    session.info.pop(_ANALYZE_KEY, None)


_ANALYZE_KEY = "skylift_analyze"
# Rows written at once from which a table's statistics are refreshed on PostgreSQL.
BULK_ROWS = 1_000


def grew(session: AsyncSession, table: str, rows: int) -> None:
    """`rows` were just written to `table` in one go. PostgreSQL plans queries from statistics that
    autovacuum refreshes about once a minute: a table that grew by thousands of rows in a second is
    planned as nearly empty (the relay's claim over a 10,000-device campaign became a nested loop over
    10,000 x 10,000 rows, 6 s per batch). Once the transaction commits its statistics are refreshed.
    SQLite plans without them."""
    if rows >= BULK_ROWS and session.get_bind().dialect.name == "postgresql":
        session.info.setdefault(_ANALYZE_KEY, set()).add(table)


_BEFORE_COMMIT_KEY = "skylift_before_commit"


def before_commit(session: AsyncSession, work: AfterCommit) -> None:
    """Queue work to run inside the session's transaction, just before it commits (in a batch: once,
    before the batch commits), such as reacting once to what many units of work changed."""
    session.info.setdefault(_BEFORE_COMMIT_KEY, []).append(work)


async def _run_before_commit(session: AsyncSession) -> None:
    # Work may queue more work; all of it runs before the commit.
    while queued := session.info.pop(_BEFORE_COMMIT_KEY, []):
        for work in queued:
            await work()


_SIGNALS_KEY = "skylift_signals"


def signal_after_commit(session: AsyncSession, name: str) -> None:
    """Tell whoever listens for `name` (see Database.on_signal) once this transaction has committed.

    A lower layer announces that it wrote work for someone (notices for the relay) without knowing who."""
    session.info.setdefault(_SIGNALS_KEY, set()).add(name)


@asynccontextmanager
async def savepoint(session: AsyncSession) -> AsyncIterator[None]:
    """A nested transaction: on error its changes and the post-commit work queued inside it are dropped."""
    queued = len(session.info.get(_AFTER_COMMIT_KEY, []))
    try:
        async with session.begin_nested():
            yield
    except BaseException:
        del session.info.get(_AFTER_COMMIT_KEY, [])[queued:]
        raise


def _tune_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy drive transactions so that every one starts with BEGIN IMMEDIATE below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(_READ_ONLY):
            # A reader in WAL mode sees the last commit and neither waits for the writer nor holds it up.
            connection.exec_driver_sql("BEGIN")
            return
        # Taking the write lock up front avoids SQLITE_BUSY when a reader later wants to write.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class WriteInReadingSession(RuntimeError):
    """Work that changes rows ran in a session meant only to read: its changes would be lost."""


def _refuse_changes(session: Session) -> None:
    if session.new or session.deleted or any(session.is_modified(row) for row in session.dirty):
        raise WriteInReadingSession("a session opened to read holds changes; they would never be committed")


def _refuse_flush(session: Session, _context: object, _instances: object) -> None:
    _refuse_changes(session)


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        connect_args: dict[str, Any] = {"timeout": 30} if self.is_sqlite else {}
        # Statement parameters hold credentials: never in log lines or error messages.
        self.engine = create_async_engine(
            url, connect_args=connect_args, pool_pre_ping=not self.is_sqlite, hide_parameters=True
        )
        if self.is_sqlite:
            _tune_sqlite(self.engine)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self._reader_sessionmaker = async_sessionmaker(
            self.engine.execution_options(**{_READ_ONLY: True}), expire_on_commit=False
        )
        self._signal_handlers: dict[str, list[Callable[[], None]]] = {}

    def on_signal(self, name: str, handler: Callable[[], None]) -> None:
        """Call `handler` after every commit of a transaction that signalled `name`."""
        self._signal_handlers.setdefault(name, []).append(handler)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commit on success, roll back on error, then run post-commit work.

        Inside a batch it is part of the batch's transaction (a savepoint, if the batch has them), and
        its post-commit work waits for the batch's commit."""
        batch = _joined()
        if batch is not None:
            if batch.savepoints:
                async with savepoint(batch.session):
                    yield batch.session
                return
            try:
                yield batch.session
            except BaseException:
                batch.failed = True
                raise
            return
        async with self.sessionmaker() as session:
            try:
                yield session
                await _run_before_commit(session)
                await session.commit()
            except BaseException:
                discard_after_commit(session)
                session.info.pop(_BEFORE_COMMIT_KEY, None)
                await session.rollback()
                raise
        grown = session.info.pop(_ANALYZE_KEY, None)
        if grown:
            await self._analyze(sorted(grown))
        for name in session.info.pop(_SIGNALS_KEY, ()):
            for handler in self._signal_handlers.get(name, ()):
                handler()
        await run_after_commit(session)

    async def _analyze(self, tables: list[str]) -> None:
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text(f"ANALYZE {', '.join(tables)}"))
                await connection.commit()
        except DBAPIError:
            # Only statistics: autovacuum refreshes them soon anyway.
            log.warning("could not refresh the statistics of %s", ", ".join(tables), exc_info=True)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncSession]:
        """A unit of work that only reads: on SQLite it takes no write lock, so a device's download or a
        list never waits behind the writers (nor holds them up). Nothing it changes is committed.

        Inside a batch it reads in the batch's transaction."""
        batch = _joined()
        if batch is not None:
            yield batch.session
            return
        # Closing the session gives its connection back rolled back, and leaves what it loaded readable.
        async with self._reader_sessionmaker() as session:
            event.listen(session.sync_session, "before_flush", _refuse_flush)
            yield session
            _refuse_changes(session.sync_session)

    @asynccontextmanager
    async def batch(self, savepoints: bool = True) -> AsyncIterator[Batch]:
        """Many units of work, one commit: each `transaction()` this task opens inside joins this one.

        Without savepoints a unit costs two statements less; when one fails (`Batch.failed`), the
        caller must roll the batch back (raise) and do its units again, with savepoints."""
        async with self.transaction() as session:
            batch = Batch(session, asyncio.current_task(), savepoints)
            token = _BATCH.set(batch)
            try:
                yield batch
            finally:
                _BATCH.reset(token)

    async def dispose(self) -> None:
        await self.engine.dispose()
