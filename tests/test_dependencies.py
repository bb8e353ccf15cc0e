"""The per-request transaction: writes are never refused because a background job wrote, and
reads never wait for a writer (SQLite), on SQLite and MariaDB."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from movietickets.settings import Settings
from tests.conftest import admin_client, loopback_app
from tests.helpers import FUTURE, buy, create_movie, wait_for_status
from tests.sql_hooks import before_statement, statements_sent
from tests.sqlite_locks import sqlite_path, write_from_another_connection, write_lock_held

WRITES = ("INSERT", "UPDATE", "DELETE")


@pytest.fixture
def sqlite_only(backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite's write lock; MariaDB locks rows")


def app_engine(app: FastAPI) -> AsyncEngine:
    engine: AsyncEngine = app.state.resources.engine
    return engine


@pytest.mark.usefixtures("sqlite_only")
@pytest.mark.parametrize("method", ["POST", "PATCH", "DELETE"])
async def test_an_admin_write_is_not_refused_because_another_connection_wrote_meanwhile(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings, method: str
) -> None:
    """The admin's row is read first, then the movie written: between the two, a purchase or
    the reconciler commits. The request's transaction already holds the write lock, so the
    other writer waits its turn (here it gives up at once) instead of the admin getting 503."""
    movie = await create_movie(client)
    path = sqlite_path(settings.database_url)
    others: list[str] = []

    def another_writer() -> None:
        if not others:
            others.append(write_from_another_connection(path))

    with before_statement(app_engine(app), lambda s: s.startswith(WRITES), another_writer):
        if method == "POST":
            body = {"title": "New", "showTime": FUTURE, "price": 100}
            response = await client.post("/api/movies", json=body)
        elif method == "PATCH":
            changed = f"/api/movies/{movie['movieId']}"
            response = await client.patch(changed, json={"max_tickets": 9})
        else:
            response = await client.delete(f"/api/movies/{movie['movieId']}")
    assert response.status_code in (200, 201, 204), response.text
    assert others == ["database is locked"]


@pytest.mark.usefixtures("sqlite_only")
async def test_read_requests_run_beside_a_writer(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    movie = await create_movie(client)
    ticket_id = (await buy(client, movie["movieId"])).json()["ticketId"]
    await wait_for_status(client, ticket_id, "Paid")  # no write left in the background
    reads = [
        "/api/movies",
        f"/api/movies/{movie['movieId']}",
        f"/api/tickets/{ticket_id}",
        "/api/admin/sales",
        "/api/admin/tickets",
        "/api/admin/anomalies",
        "/readyz",
    ]
    app.state.resources.catalogue.changed()  # the next catalogue read reloads
    with (
        statements_sent(app_engine(app), lambda s: s.startswith("BEGIN")) as begins,
        write_lock_held(sqlite_path(settings.database_url)),
    ):
        # A BEGIN IMMEDIATE would wait for the lock (busy_timeout, 30 s) instead.
        async with asyncio.timeout(10):
            for path in reads:
                assert (await client.get(path)).status_code == 200, path
    assert begins
    assert set(begins) == {"BEGIN"}


@pytest.fixture
def busy_settings(settings: Settings) -> Settings:
    # The reconciler runs inside the service and has work at once.
    return settings.model_copy(
        update={
            "reconcile_in_service": True,
            "reconcile_poll_seconds": 0.01,
            "reconcile_first_query_seconds": 0.0,
            "reconcile_retry_seconds": 0.05,
            "reconcile_max_interval_seconds": 0.05,
        }
    )


@pytest.fixture
async def busy_client(
    busy_settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[httpx.AsyncClient]:
    async with loopback_app(busy_settings) as application:
        transport = httpx.ASGITransport(app=application)
        options: dict[str, Any] = {"transport": transport, "base_url": "http://testserver"}
        async with admin_client(sessionmaker, busy_settings, timeout=60, **options) as client:
            yield client


async def test_admin_writes_beside_purchases_and_the_reconciler_are_never_refused(
    busy_client: httpx.AsyncClient,
) -> None:
    client = busy_client
    showing = await create_movie(client, max_tickets=1000)
    # Callbacks (paid), lost callbacks the reconciler settles by query (9003), and phones
    # that never answer (1037): every kind of write the service does in the background.
    outcomes = ["4149", "9003", "1037"]
    statuses: Counter[int] = Counter()

    async def purchase(n: int) -> None:
        phone = f"07{n:04d}{outcomes[n % 3]}"  # one phone per buyer, as M-Pesa would have it
        response = await buy(client, showing["movieId"], phone=phone)
        statuses[response.status_code] += 1

    async def admin_write(n: int) -> None:
        if n % 2:
            response = await client.patch(
                f"/api/movies/{showing['movieId']}", json={"max_tickets": 900 + n}
            )
        else:
            body: dict[str, Any] = {"title": f"Added {n}", "showTime": FUTURE, "price": 100}
            response = await client.post("/api/movies", json=body)
        statuses[response.status_code] += 1

    for round in range(3):
        await asyncio.gather(
            *(purchase(round * 30 + n) for n in range(30)),
            *(admin_write(n) for n in range(20)),
        )
    # Purchases and PATCHes 200, creations 201: no 503 "database is locked".
    assert statuses == Counter({200: 90 + 30, 201: 30})
