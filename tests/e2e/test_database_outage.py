"""The service rides out a database restart and answers a clear 503 while it is away."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import func, make_url, select, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from movietickets.app import create_app
from movietickets.db.models import CallbackLog, CallbackOutcome, PaymentStatus, PushRequest, Ticket
from movietickets.settings import Settings
from tests.conftest import admin_headers, make_settings
from tests.helpers import FUTURE, buy, callback_body, create_movie
from tests.live_server import daraja_simulator, free_port, live_server, start_server
from tests.tcp_proxy import TcpProxy, tcp_proxy


@pytest.fixture
async def unreachable_database_client() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings("mysql+asyncmy://root@127.0.0.1:1/gone"))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


async def test_database_away_is_a_clear_503(
    unreachable_database_client: httpx.AsyncClient,
) -> None:
    client = unreachable_database_client
    assert (await client.get("/healthz")).status_code == 200
    for response in (
        await client.get("/readyz"),
        await client.get("/api/movies"),
        await client.post(
            "/api/make-payment",
            json={"movieId": 1, "customerName": "A", "phoneNumber": "0712345678", "quantity": 1},
        ),
    ):
        assert response.status_code == 503
        body = response.text
        assert "SELECT" not in body
        assert "asyncmy" not in body
        assert "Traceback" not in body


async def kill_connections(engine: AsyncEngine, database: str) -> int:
    """What a database restart does to the service: every connection it holds dies."""
    async with engine.connect() as connection:
        own = await connection.scalar(text("SELECT CONNECTION_ID()"))
        ids = (
            await connection.scalars(
                text("SELECT id FROM information_schema.processlist WHERE db = :db AND id != :own"),
                {"db": database, "own": own},
            )
        ).all()
        killed = 0
        for connection_id in ids:
            try:
                await connection.execute(text(f"KILL {int(connection_id)}"))
                killed += 1
            except OperationalError as exc:
                if "Unknown thread id" not in str(exc):  # it ended by itself meanwhile
                    raise
    return killed


async def test_connections_killed_under_load_lose_nothing(
    database_url: str,
    backend: str,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    if backend != "mariadb":
        pytest.skip("SQLite has no server to restart")
    database = database_url.rsplit("/", 1)[1]
    headers = await admin_headers(sessionmaker, settings)
    with live_server(database_url, SIMULATOR_CALLBACK_DELAY_SECONDS="0.1") as base_url:
        async with httpx.AsyncClient(base_url=base_url, timeout=30, headers=headers) as http:
            movie = {"title": "Outage", "showTime": FUTURE, "price": 10, "max_tickets": 1000}
            movie_id = (await http.post("/api/movies", json=movie)).json()["movie"]["movieId"]

            async def buy(n: int) -> httpx.Response:
                return await http.post(
                    "/api/make-payment",
                    json={
                        "movieId": movie_id,
                        "customerName": f"B{n}",
                        "phoneNumber": f"0711{n:06d}",
                        "quantity": 1,
                    },
                )

            async def killer() -> int:
                killed = 0
                for _ in range(5):
                    await asyncio.sleep(0.15)
                    killed += await kill_connections(engine, database)
                return killed

            responses, killed = await asyncio.gather(
                asyncio.gather(*(buy(n) for n in range(150))), killer()
            )
            after = await http.get("/api/movies")
    statuses = Counter(response.status_code for response in responses)
    assert killed > 0
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[200] > 0
    assert after.status_code == 200  # recovered without a restart
    accepted = {
        response.json()["ticketId"] for response in responses if response.status_code == 200
    }
    async with sessionmaker() as session:
        stored = set((await session.scalars(select(Ticket.ticket_id))).all())
    assert accepted <= stored  # every accepted payment is in the database


# --- The database unreachable while payments are in flight --------------------------------
# The live server reaches MariaDB through a TCP proxy that the test stops (connections
# refused, open ones cut: what a database outage looks like from the service) and starts.

JOURNAL_QUICK = {"JOURNAL_REPLAY_SECONDS": "0.2", "JOURNAL_REPLAY_MAX_SECONDS": "0.5"}


@pytest.fixture
def database_proxy(database_url: str, backend: str) -> Iterator[tuple[TcpProxy, str]]:
    """The proxy, and the test database's URL through it."""
    if backend != "mariadb":
        pytest.skip("SQLite has no server to lose")
    url = make_url(database_url)
    with tcp_proxy(url.host or "127.0.0.1", url.port or 3306) as proxy:
        yield (
            proxy,
            url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False),
        )


def journal_entries(directory: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(directory.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


async def wait_until(condition: Callable[[], Awaitable[bool]], seconds: float = 30) -> None:
    async with asyncio.timeout(seconds):
        while not await condition():  # noqa: ASYNC110 (polling another process's work)
            await asyncio.sleep(0.1)


async def test_a_callback_during_an_outage_is_kept_across_a_restart_and_applied(
    database_proxy: tuple[TcpProxy, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    tmp_path: Path,
) -> None:
    proxy, proxied_url = database_proxy
    journal = tmp_path / "journal"
    env = {"JOURNAL_DIR": str(journal), **JOURNAL_QUICK}
    headers = await admin_headers(sessionmaker, settings)
    first = start_server(proxied_url, extra_env=env)
    try:
        async with httpx.AsyncClient(base_url=first.url, timeout=10, headers=headers) as http:
            movie = await create_movie(http, price=500)
            # Paid, but the simulator's callback is lost: ours, below, is the one that counts.
            bought = await buy(http, movie["movieId"], phone="0712349003")
            assert bought.status_code == 200, bought.text
            ticket_id, checkout_id = bought.json()["ticketId"], bought.json()["checkoutRequestId"]
            proxy.stop()
            callback = callback_body(checkout_id, amount=500, receipt="OUTAGE0001")
            answer = await http.post("/api/payment-callback", json=callback)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"ResultCode": 0, "ResultDesc": "Accepted"}
    finally:
        first.kill()
    (kept,) = journal_entries(journal)
    assert kept["kind"] == "callback"
    assert kept["checkoutRequestId"] == checkout_id

    # Restarted while the database is still away: the journal is read again, and waits.
    second = start_server(proxied_url, serve_args=("--no-migrate",), extra_env=env)
    try:
        await asyncio.sleep(1)
        assert await status_of(sessionmaker, ticket_id) == "Pending"
        proxy.start()  # no request to the service from here on

        async def paid() -> bool:
            return await status_of(sessionmaker, ticket_id) == "Paid"

        await wait_until(paid)
        await wait_until(journal_replayed(journal))
    finally:
        second.stop()
    async with sessionmaker() as session:
        ticket = await session.get_one(Ticket, ticket_id)
        logged = (await session.scalars(select(CallbackLog))).all()
    assert ticket.mpesa_receipt_number == "OUTAGE0001"
    assert [(entry.outcome, entry.ticket_id) for entry in logged] == [
        (CallbackOutcome.APPLIED, ticket_id)
    ]
    assert journal_entries(journal) == []


async def test_pushes_answered_during_an_outage_are_recorded_when_it_ends(
    database_proxy: tuple[TcpProxy, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    tmp_path: Path,
) -> None:
    proxy, proxied_url = database_proxy
    buyers = 20
    journal = tmp_path / "journal"
    headers = await admin_headers(sessionmaker, settings)
    port = free_port()
    # Daraja answers each push after 1.5 s, and calls back 2.5 s after it: both while the
    # database is away.
    with daraja_simulator(callback_delay=2.5, push_delay=1.5) as daraja:
        env = {"JOURNAL_DIR": str(journal), **JOURNAL_QUICK, **daraja.settings}
        first = start_server(proxied_url, port=port, extra_env=env)
        try:
            async with httpx.AsyncClient(base_url=first.url, timeout=30, headers=headers) as http:
                movie = await create_movie(http, price=100, max_tickets=buyers)
                purchases = [
                    asyncio.create_task(buy(http, movie["movieId"], phone=f"0712{n:02d}4149"))
                    for n in range(buyers)
                ]

                async def all_held() -> bool:
                    async with sessionmaker() as session:
                        held = await session.scalar(select(func.count()).select_from(Ticket))
                    return held == buyers

                await wait_until(all_held)  # every push is on its way to Daraja
                proxy.stop()
                responses = await asyncio.gather(*purchases)
                # Each buyer is told its ticket and its push, as if nothing had happened.
                for response in responses:
                    assert response.status_code == 200, response.text
                answered = {
                    response.json()["ticketId"]: response.json()["checkoutRequestId"]
                    for response in responses
                }

                async def callbacks_kept() -> bool:
                    kinds = Counter(entry["kind"] for entry in journal_entries(journal))
                    return kinds == {"push": buyers, "callback": buyers}

                await wait_until(callbacks_kept, seconds=20)
        finally:
            first.kill()
        second = start_server(proxied_url, port=port, serve_args=("--no-migrate",), extra_env=env)
        try:
            proxy.start()

            async def all_paid() -> bool:
                async with sessionmaker() as session:
                    statuses = (await session.scalars(select(Ticket.payment_status))).all()
                paid = statuses.count(PaymentStatus.PAID) == buyers
                return paid and journal_entries(journal) == []

            await wait_until(all_paid)
        finally:
            second.stop()
    async with sessionmaker() as session:
        rows = await session.execute(select(PushRequest.ticket_id, PushRequest.checkout_request_id))
        recorded = {ticket_id: checkout_id for ticket_id, checkout_id in rows}
        outcomes = Counter((await session.scalars(select(CallbackLog.outcome))).all())
    assert recorded == answered
    assert outcomes == {CallbackOutcome.APPLIED: buyers}
    assert journal_entries(journal) == []


def journal_replayed(directory: Path) -> Callable[[], Awaitable[bool]]:
    async def replayed() -> bool:
        return journal_entries(directory) == []

    return replayed


async def status_of(sessionmaker: async_sessionmaker[AsyncSession], ticket_id: int) -> str:
    async with sessionmaker() as session:
        ticket = await session.get_one(Ticket, ticket_id)
        return str(ticket.payment_status)
