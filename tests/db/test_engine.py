"""Transactions on SQLite: a write never fails because another connection wrote meanwhile,
and reads never wait for the writer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from movietickets.db.engine import locked_transaction, ping, read_transaction
from movietickets.db.models import Movie
from movietickets.settings import Settings
from tests.sql_hooks import statements_sent
from tests.sqlite_locks import sqlite_path, write_from_another_connection, write_lock_held


@pytest.fixture
def sqlite_only(backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite's write lock; MariaDB locks rows")


def a_movie() -> Movie:
    return Movie(
        title="Edge",
        show_time=datetime.now(UTC) + timedelta(days=1),
        price=100,
        max_tickets=10,
        seats_paid=0,
    )


@pytest.mark.usefixtures("sqlite_only")
@pytest.mark.parametrize("transaction", ["session.begin", "locked_transaction"])
async def test_read_then_write_is_not_refused_because_another_connection_wrote_between(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, transaction: str
) -> None:
    """A deferred transaction would fail its write at once (SQLITE_BUSY_SNAPSHOT, which
    busy_timeout does not wait out); every writing transaction takes the lock at BEGIN."""
    path = sqlite_path(settings.database_url)

    async def read_then_write(session: AsyncSession) -> str:
        await session.scalar(select(func.count()).select_from(Movie))
        other = write_from_another_connection(path)
        session.add(a_movie())
        await session.flush()
        return other

    if transaction == "session.begin":
        async with sessionmaker() as session, session.begin():
            other = await read_then_write(session)
    else:
        async with locked_transaction(sessionmaker) as session:
            other = await read_then_write(session)
    # The other writer waits its turn (here: gives up at once) instead of this one failing.
    assert other == "database is locked"
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(Movie)) == 1


@pytest.mark.usefixtures("sqlite_only")
async def test_reads_run_beside_the_writer(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, engine: AsyncEngine
) -> None:
    async with locked_transaction(sessionmaker) as session:
        session.add(a_movie())
    with (
        statements_sent(engine, lambda statement: statement.startswith("BEGIN")) as begins,
        write_lock_held(sqlite_path(settings.database_url)),
    ):
        async with read_transaction(sessionmaker) as session:
            assert await session.scalar(select(func.count()).select_from(Movie)) == 1
        await ping(engine)
    assert begins == ["BEGIN", "BEGIN"]  # the read transaction and the ping


async def test_every_transaction_but_a_read_begins_immediate(
    sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine, backend: str
) -> None:
    with statements_sent(engine, lambda statement: statement.startswith("BEGIN")) as begins:
        async with sessionmaker() as session, session.begin():
            session.add(a_movie())
        async with locked_transaction(sessionmaker) as session:
            await session.scalar(select(func.count()).select_from(Movie))
        async with read_transaction(sessionmaker) as session:
            await session.scalar(select(func.count()).select_from(Movie))
    # MariaDB begins implicitly (READ COMMITTED, rows locked by the repositories).
    expected = ["BEGIN IMMEDIATE", "BEGIN IMMEDIATE", "BEGIN"] if backend == "sqlite" else []
    assert begins == expected
