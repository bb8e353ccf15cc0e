"""Engine and session factory for SQLite (aiosqlite) and MySQL/MariaDB (asyncmy)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from movietickets.db.charset import connect_args
from movietickets.settings import Settings

# The rest of the service types its sessions with these: only db/ and the repositories import
# SQLAlchemy (an import-linter contract in pyproject.toml).
__all__ = [
    "DATABASE_UNAVAILABLE",
    "AsyncEngine",
    "AsyncSession",
    "Sessionmaker",
    "after_commit",
    "create_engine",
    "create_sessionmaker",
    "locked_transaction",
    "ping",
    "read_transaction",
]

Sessionmaker = async_sessionmaker[AsyncSession]

# Raised when the database cannot be reached or the pool has no connection to give: the
# request is answered 503, not 500.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    PoolTimeoutError,
    OperationalError,
    InterfaceError,
)

# On SQLite every transaction begins IMMEDIATE (the database's write lock is taken at BEGIN,
# SQLite's equivalent of locking the movie row) unless it carries this execution option, which
# only `read_transaction` and `ping` set. A deferred transaction that reads and then writes
# fails at once with "database is locked" (SQLITE_BUSY_SNAPSHOT, which busy_timeout does not
# wait out) when another connection committed in between; IMMEDIATE waits its turn instead.
# So a transaction that may write needs nothing, and only code that never writes opts out,
# which lets WAL run its reads beside the writer.
SQLITE_DEFERRED = "sqlite_begin_deferred"


def create_engine(settings: Settings) -> AsyncEngine:
    if settings.is_sqlite:
        # Every aiosqlite connection is a thread with its own page cache: bounded like MySQL's
        # pool (an in-memory database has one connection, and no pool to size).
        in_memory = make_url(settings.database_url).database in (None, "", ":memory:")
        pool: dict[str, int] = (
            {}
            if in_memory
            else {"pool_size": settings.db_pool_size, "max_overflow": settings.db_max_overflow}
        )
        engine = create_async_engine(
            settings.database_url, echo=settings.db_echo, connect_args={"timeout": 30}, **pool
        )
        _configure_sqlite(engine)
        return engine
    return create_async_engine(
        settings.database_url,
        echo=settings.db_echo,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        # Survive a database restart: a dead pooled connection is replaced, not handed out.
        pool_pre_ping=True,
        pool_recycle=1800,
        # The seat check reads committed rows after taking the movie's row lock.
        isolation_level="READ COMMITTED",
        # utf8mb4 whatever the server's default: names like `Wanjirũ 😀` are stored as sent.
        connect_args=connect_args(settings.database_url),
    )


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when and how a transaction begins.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Connection) -> None:
        deferred = conn.get_execution_options().get(SQLITE_DEFERRED, False)
        conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")


def create_sessionmaker(engine: AsyncEngine) -> Sessionmaker:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def locked_transaction(sessionmaker: Sessionmaker) -> AsyncIterator[AsyncSession]:
    """A short write transaction whose locks are taken as it goes, committed on exit.

    On MySQL/MariaDB rows are locked with SELECT ... FOR UPDATE by the repositories; on SQLite
    the transaction starts with BEGIN IMMEDIATE, which takes the database's write lock at once
    (as every transaction but a `read_transaction` does).
    """
    async with sessionmaker() as session, session.begin():
        await session.connection()
        yield session


@asynccontextmanager
async def read_transaction(sessionmaker: Sessionmaker) -> AsyncIterator[AsyncSession]:
    """A transaction that only reads: on SQLite it begins deferred, beside the writer.

    Nothing in it may write: on SQLite a write would fail whenever another connection has
    committed since its first read.
    """
    async with sessionmaker() as session, session.begin():
        await session.connection(execution_options={SQLITE_DEFERRED: True})
        yield session


def after_commit(session: AsyncSession, callback: Callable[[], None]) -> None:
    """Calls `callback` once the session's transaction has committed, never on a rollback.

    For caches of what the transaction wrote: dropping them before the commit would let a
    concurrent reload cache the old rows again.
    """
    event.listen(session.sync_session, "after_commit", lambda _session: callback(), once=True)


async def ping(engine: AsyncEngine) -> None:
    """Raises unless the database answers a trivial query."""
    async with engine.connect() as connection:
        await connection.execution_options(**{SQLITE_DEFERRED: True})
        await connection.execute(text("SELECT 1"))
