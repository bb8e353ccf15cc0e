"""The benchmark's databases: recreated per stage, migrated, filled with plain SQL, checked.

Every stage starts from a fresh database (MariaDB `mt_bench` dropped and recreated, or a new
SQLite file under bench/results/), migrated by `movietickets migrate` (Alembic upgrade head),
then filled by `seed()`: 20 movies and, when asked, stored tickets spread over them, and
settled by `settle()`, so that no stage measures the database's own work after a bulk load.

The rows the harness writes are built in ONE place, `movie_rows()` / `ticket_rows()` /
`push_request_rows()` below. Inserts check the live table first: a column the schema gained
that is NOT NULL without a server default stops the run with a message naming it.
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import DateTime, MetaData, Table, bindparam, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from bench.options import PROJECT_ROOT, RESULTS_DIR
from bench.servers import movietickets_command

T = TypeVar("T")

MOVIE_COUNT = 20
HOT_MOVIE_ID = 1
HOT_MOVIE_SEATS = 100_000  # the schema's maximum: room for every make-payment of a run
READ_STAGE_TICKETS = 200  # tickets stored for GET /api/tickets/{id}
MIGRATE_TIMEOUT_S = 180
INSERT_CHUNK = 5_000


class DataError(RuntimeError):
    """The database could not be prepared or checked."""


DB_TIMEOUT_S = 120.0
SEED_TIMEOUT_S = 600.0
SETTLE_TIMEOUT_S = 120.0


def _run(coroutine_factory: Callable[[], Awaitable[T]], timeout_s: float = DB_TIMEOUT_S) -> T:
    """Run one database job to completion, or raise DataError after `timeout_s`."""

    async def main() -> T:
        return await asyncio.wait_for(coroutine_factory(), timeout_s)

    try:
        return asyncio.run(main())
    except TimeoutError as exc:
        raise DataError(f"database work did not finish within {timeout_s:.0f} s") from exc
    except SQLAlchemyError as exc:
        raise DataError(f"database error: {getattr(exc, 'orig', None) or exc}") from exc


def _now() -> datetime:
    """Naive UTC, the way the service stores times (DATETIME(6) on MariaDB)."""
    return datetime.now(UTC).replace(tzinfo=None)


# --- THE ROWS THE BENCHMARK WRITES ---------------------------------------------------------------
# If the schema gains a required column, add it here (the insert names it when it is missing).

# Fixed, so that GET /api/movies answers the same bytes on every run. Naive UTC, as stored.
_CREATED = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).replace(tzinfo=None)
_FIRST_SHOW = datetime(2030, 1, 1, 18, 0, 0, tzinfo=UTC).replace(tzinfo=None)
_NAMES = ("Amina Otieno", "Brian Kamau", "Cynthia Wanjiru", "David Mwangi", "Esther Achieng")


def movie_rows(seats_paid: dict[int, int], hot_movie_seats: int) -> list[dict[str, Any]]:
    """20 showings; movie 1 is the hot one, the others have 42,000-80,000 seats."""
    rows = []
    for movie_id in range(1, MOVIE_COUNT + 1):
        hot = movie_id == HOT_MOVIE_ID
        rows.append(
            {
                "movieId": movie_id,
                "title": f"Benchmark Feature {movie_id:02d}",
                "description": (
                    f"Showing {movie_id} of the benchmark programme: a two-hour feature with "
                    "a short intermission, screened in hall "
                    f"{(movie_id - 1) % 4 + 1}. Doors open thirty minutes before the show."
                ),
                "showTime": _FIRST_SHOW + timedelta(days=movie_id - 1, hours=movie_id % 3),
                "price": 300 + 50 * (movie_id % 10),
                "max_tickets": hot_movie_seats if hot else 40_000 + 2_000 * movie_id,
                "imageUrl": f"https://example.com/posters/benchmark-{movie_id:02d}.jpg",
                "seatsPaid": seats_paid.get(movie_id, 0),
                "dateCreated": _CREATED,
                "lastUpdated": _CREATED,
            }
        )
    return rows


def ticket_rows(count: int, prices: dict[int, int]) -> list[dict[str, Any]]:
    """`count` old tickets over the 20 movies: 60% Paid, 30% Failed, 10% Pending (expired)."""
    rng = random.Random(20261124)
    now = _now()
    rows = []
    for index in range(count):
        movie_id = index % MOVIE_COUNT + 1
        quantity = rng.choices((1, 2, 3, 4, 5), weights=(50, 25, 12, 8, 5))[0]
        created = now - timedelta(days=1, seconds=rng.randrange(90 * 24 * 3600))
        roll = rng.random()
        status = "Paid" if roll < 0.6 else "Failed" if roll < 0.9 else "Pending"
        paid = status == "Paid"
        failed = status == "Failed"
        rows.append(
            {
                "ticketId": index + 1,
                "movieId": movie_id,
                "customerName": rng.choice(_NAMES),
                "phoneNumber": f"2547{rng.randrange(10**8):08d}",
                "quantity": quantity,
                "totalAmount": quantity * prices[movie_id],
                "paymentStatus": status,
                "mpesaReceiptNumber": f"BNC{index:07d}" if paid else None,
                "transactionDate": created + timedelta(seconds=25) if paid else None,
                "resultCode": "0" if paid else "1032" if failed else None,
                "resultDesc": (
                    "The service request is processed successfully."
                    if paid
                    else "Request cancelled by user"
                    if failed
                    else None
                ),
                # Every stored hold has expired: old Pending tickets hold no seats.
                "holdExpiresAt": created + timedelta(minutes=10),
                "needsRefund": 0,
                "dateCreated": created,
                "lastUpdated": created + timedelta(seconds=30) if status != "Pending" else created,
            }
        )
    return rows


def push_request_rows(tickets: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The STK push each stored ticket was sent (the service adds one per make-payment)."""
    return [
        {
            "ticketId": ticket["ticketId"],
            "checkoutRequestId": f"ws_CO_bench{ticket['ticketId']:012d}",
            "merchantRequestId": f"bench-{ticket['ticketId']}",
            "nextQueryAt": None,
            "queryAttempts": 0,
            "dateCreated": ticket["dateCreated"],
            "lastUpdated": ticket["lastUpdated"],
        }
        for ticket in tickets
    ]


# --------------------------------------------------------------------------------------------------


def _required_columns(table: Table) -> set[str]:
    return {
        column.name
        for column in table.columns
        if not column.nullable
        and column.server_default is None
        and not (column.primary_key and column.autoincrement in (True, "auto"))
    }


async def _insert(
    connection: AsyncConnection, table_name: str, rows: Sequence[dict[str, Any]]
) -> None:
    if not rows:
        return

    def reflect(sync_connection: Connection) -> Table:
        return Table(table_name, MetaData(), autoload_with=sync_connection)

    table = await connection.run_sync(reflect)
    present = set(table.columns.keys())
    missing = _required_columns(table) - rows[0].keys()
    if missing:
        raise DataError(
            f"table {table_name!r} has required column(s) the benchmark does not fill: "
            f"{', '.join(sorted(missing))}. Add them in bench/data.py ({table_name} rows)."
        )
    # Columns the schema dropped (or has not gained yet) are left out.
    rows = [{key: value for key, value in row.items() if key in present} for row in rows]
    for start in range(0, len(rows), INSERT_CHUNK):
        await connection.execute(table.insert(), rows[start : start + INSERT_CHUNK])


@dataclass(frozen=True, slots=True)
class OversellCheck:
    max_tickets: int
    seats_paid: int  # movie.seatsPaid
    paid_quantity: int  # SUM(quantity) of its Paid tickets
    held_quantity: int  # SUM(quantity) of its Pending tickets whose hold has not expired
    tickets: dict[str, int]  # tickets per paymentStatus

    @property
    def oversold(self) -> int:
        return max(0, self.seats_paid + self.held_quantity - self.max_tickets)

    @property
    def seats_paid_drift(self) -> int:
        """movie.seatsPaid minus the Paid quantities it should equal (0 expected)."""
        return self.seats_paid - self.paid_quantity

    def describe(self) -> str:
        if self.seats_paid_drift:
            return f"{self.oversold} (seatsPaid off by {self.seats_paid_drift:+d})"
        return str(self.oversold)


_OVERSELL_SQL = text(
    """
    SELECT m.max_tickets, m.seatsPaid,
      (SELECT COALESCE(SUM(t.quantity), 0) FROM ticket t
        WHERE t.movieId = m.movieId AND t.paymentStatus = 'Paid') AS paid_quantity,
      (SELECT COALESCE(SUM(t.quantity), 0) FROM ticket t
        WHERE t.movieId = m.movieId AND t.paymentStatus = 'Pending'
          AND t.holdExpiresAt > :now) AS held_quantity
    FROM movie m WHERE m.movieId = :movie_id
    """
).bindparams(bindparam("now", type_=DateTime()))

_STATUS_COUNTS_SQL = text(
    "SELECT paymentStatus, COUNT(*) FROM ticket WHERE movieId = :movie_id GROUP BY paymentStatus"
)

_SUFFIX_COUNTS_SQL = text(
    "SELECT paymentStatus, COUNT(*) FROM ticket WHERE movieId = :movie_id"
    " AND phoneNumber LIKE :pattern GROUP BY paymentStatus"
)


class BenchDatabase:
    """One backend's database: `mariadb` (database `mt_bench`) or `sqlite` (a file)."""

    def __init__(self, backend: str, *, mariadb_url: str, database: str) -> None:
        self.backend = backend
        self._server_url = mariadb_url
        self._name = database
        self.sqlite_path = RESULTS_DIR / f"{database}.sqlite3"
        if backend == "mariadb":
            self.url = f"{mariadb_url}/{database}"
        else:
            self.url = f"sqlite+aiosqlite:///{self.sqlite_path}"

    def _engine(self, url: str | None = None) -> AsyncEngine:
        return create_async_engine(url or self.url, poolclass=NullPool)

    async def _with_connection(
        self, work: Callable[[AsyncConnection], Awaitable[T]], *, url: str | None = None
    ) -> T:
        engine = self._engine(url)
        try:
            async with engine.begin() as connection:
                return await work(connection)
        finally:
            await engine.dispose()

    # --- lifecycle ---------------------------------------------------------------------------

    def recreate(self) -> None:
        """Drop and recreate the (empty) database."""
        if self.backend == "sqlite":
            self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{self.sqlite_path}{suffix}").unlink(missing_ok=True)
            return

        async def recreate(connection: AsyncConnection) -> None:
            await connection.execute(text("SET SESSION sql_notes = 0"))  # no "doesn't exist" note
            await connection.execute(text(f"DROP DATABASE IF EXISTS `{self._name}`"))
            await connection.execute(text(f"CREATE DATABASE `{self._name}`"))

        try:
            _run(lambda: self._with_connection(recreate, url=f"{self._server_url}/"))
        except Exception as exc:
            reason = getattr(exc, "orig", None) or exc  # the driver's words, not SQLAlchemy's
            raise DataError(f"MariaDB not usable at {self._server_url}: {reason}") from exc

    def migrate(self) -> None:
        """`movietickets migrate` (Alembic upgrade head), exactly as an operator would run it."""
        try:
            completed = subprocess.run(
                movietickets_command("migrate"),
                cwd=PROJECT_ROOT,
                env={**os.environ, "DATABASE_URL": self.url, "LOG_LEVEL": "WARNING"},
                capture_output=True,
                text=True,
                timeout=MIGRATE_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise DataError(f"migrations did not finish within {MIGRATE_TIMEOUT_S} s") from exc
        if completed.returncode != 0:
            output = (completed.stdout + completed.stderr).strip()
            raise DataError(f"movietickets migrate failed:\n{output[-2000:]}")

    def seed(self, stored_tickets: int, *, hot_movie_seats: int = HOT_MOVIE_SEATS) -> None:
        """20 movies and `stored_tickets` old tickets (with their pushes) spread over them."""
        prices = {row["movieId"]: row["price"] for row in movie_rows({}, hot_movie_seats)}
        tickets = ticket_rows(stored_tickets, prices)
        seats_paid: dict[int, int] = {}
        for ticket in tickets:
            if ticket["paymentStatus"] == "Paid":
                movie_id = ticket["movieId"]
                seats_paid[movie_id] = seats_paid.get(movie_id, 0) + ticket["quantity"]

        async def fill(connection: AsyncConnection) -> None:
            await _insert(connection, "movie", movie_rows(seats_paid, hot_movie_seats))
            await _insert(connection, "ticket", tickets)
            await _insert(connection, "pushrequest", push_request_rows(tickets))

        _run(lambda: self._with_connection(fill), SEED_TIMEOUT_S)

    def settle(self) -> None:
        """Finish the work a bulk load leaves behind before anything is measured.

        A service reaches 100,000 tickets over weeks, not seconds before the measurement:
        fresh optimizer statistics, and no write-back of the load competing with the run
        (InnoDB flushing dirty pages; SQLite checkpointing a WAL of the whole load on the
        service's first commit). Every stage settles, the empty database too.
        """

        async def sqlite(connection: AsyncConnection) -> None:
            await connection.exec_driver_sql("ANALYZE")
            await connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

        async def mariadb(connection: AsyncConnection) -> None:
            tables = "`movie`, `ticket`, `pushrequest`"
            await connection.exec_driver_sql(f"ANALYZE TABLE {tables}")
            # Writes every dirty page of these tables to disk now (an idle InnoDB may keep
            # them in memory and flush them later, in the middle of a measurement).
            await connection.exec_driver_sql(f"FLUSH TABLES {tables} FOR EXPORT")
            await connection.exec_driver_sql("UNLOCK TABLES")

        async def settle() -> None:
            engine = self._engine()
            try:
                # Outside a transaction: a checkpoint cannot run inside one.
                async with engine.connect() as connection:
                    autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                    await (sqlite if self.backend == "sqlite" else mariadb)(autocommit)
            finally:
                await engine.dispose()

        _run(settle, SETTLE_TIMEOUT_S)

    def prepare(self, stored_tickets: int, *, hot_movie_seats: int | None = None) -> None:
        self.recreate()
        self.migrate()
        self.seed(stored_tickets, hot_movie_seats=hot_movie_seats or HOT_MOVIE_SEATS)
        self.settle()

    # --- checks ------------------------------------------------------------------------------

    def oversell(self, movie_id: int = HOT_MOVIE_ID) -> OversellCheck:
        async def check(connection: AsyncConnection) -> OversellCheck:
            row = (
                await connection.execute(_OVERSELL_SQL, {"now": _now(), "movie_id": movie_id})
            ).one()
            counts = await connection.execute(_STATUS_COUNTS_SQL, {"movie_id": movie_id})
            return OversellCheck(
                max_tickets=int(row[0]),
                seats_paid=int(row[1]),
                paid_quantity=int(row[2]),
                held_quantity=int(row[3]),
                tickets={str(status): int(n) for status, n in counts},
            )

        return _run(lambda: self._with_connection(check))

    def ticket_counts(self, movie_id: int, *, phone_suffix: str = "") -> dict[str, int]:
        """Tickets per paymentStatus for one movie, optionally only phones ending `phone_suffix`."""

        async def count(connection: AsyncConnection) -> dict[str, int]:
            rows = await connection.execute(
                _SUFFIX_COUNTS_SQL, {"movie_id": movie_id, "pattern": f"%{phone_suffix}"}
            )
            return {str(status): int(n) for status, n in rows}

        return _run(lambda: self._with_connection(count))

    def paid_ticket_id(self) -> int:
        async def first(connection: AsyncConnection) -> int:
            row = (
                await connection.execute(
                    text(
                        "SELECT MIN(ticketId) FROM ticket WHERE paymentStatus = 'Paid'"
                        " AND movieId <> :hot"
                    ),
                    {"hot": HOT_MOVIE_ID},
                )
            ).one()
            if row[0] is None:
                raise DataError("no Paid ticket stored")
            return int(row[0])

        return _run(lambda: self._with_connection(first))

    def server_version(self) -> str:
        async def version(connection: AsyncConnection) -> str:
            sql = "SELECT sqlite_version()" if self.backend == "sqlite" else "SELECT VERSION()"
            return str((await connection.execute(text(sql))).scalar_one())

        url = None if self.backend == "sqlite" else f"{self._server_url}/"
        if self.backend == "sqlite":
            self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
            url = "sqlite+aiosqlite://"
        try:
            return _run(lambda: self._with_connection(version, url=url))
        except Exception as exc:
            return f"unavailable ({type(exc).__name__})"
