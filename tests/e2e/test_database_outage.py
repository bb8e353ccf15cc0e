"""The service rides out a database restart and answers a clear 503 while it is away; what
Daraja sends while the database is away (push answers, callbacks) is kept and applied."""

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
        if line.endswith("}")  # a line being written is not an entry yet
    ]


async def wait_until(condition: Callable[[], Awaitable[bool]], seconds: float = 45) -> None:
    """Polls another process's work with a deadline generous for a loaded machine."""
    async with asyncio.timeout(seconds):
        while not await condition():  # noqa: ASYNC110 (polling another process's work)
            await asyncio.sleep(0.1)


async def status_of(sessionmaker: async_sessionmaker[AsyncSession], ticket_id: int) -> str:
    async with sessionmaker() as session:
        ticket = await session.get_one(Ticket, ticket_id)
        return str(ticket.payment_status)


async def test_what_daraja_sends_during_an_outage_is_kept_across_a_restart_and_applied(
    database_proxy: tuple[TcpProxy, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    tmp_path: Path,
) -> None:
    """40 buyers, the database gone while Daraja is answering their pushes (after 1.5 s: real
    Daraja takes 1-3 s) and calling back (after 2.5 s); and the callback of a push recorded
    before the outage. Every buyer is told its ticket and push, Daraja is answered 200, the
    service is killed and restarted while the database is still away, and once it is back,
    with no request to the service, every ticket is Paid, each push and callback recorded
    once."""
    proxy, proxied_url = database_proxy
    buyers = 40
    journal = tmp_path / "journal"
    headers = await admin_headers(sessionmaker, settings)
    port = free_port()  # the same after the restart: where Daraja was told to call back
    with daraja_simulator(callback_delay=2.5, push_delay=1.5) as daraja:
        env = {"JOURNAL_DIR": str(journal), **JOURNAL_QUICK, **daraja.settings}
        # The fixture migrated the database.
        first = start_server(proxied_url, port=port, serve_args=("--no-migrate",), env=env)
        try:
            async with httpx.AsyncClient(base_url=first.url, timeout=60, headers=headers) as http:
                movie = await create_movie(http, price=100, max_tickets=buyers + 1)
                # Paid, but its callback is lost (9003): the one sent below is the one that counts.
                early = await buy(http, movie["movieId"], phone="0712349003")
                assert early.status_code == 200, early.text
                purchases = [
                    asyncio.create_task(buy(http, movie["movieId"], phone=f"0712{n:02d}4149"))
                    for n in range(buyers)
                ]

                async def all_held() -> bool:
                    async with sessionmaker() as session:
                        held = await session.scalar(select(func.count()).select_from(Ticket))
                    return held == buyers + 1

                await wait_until(all_held)  # every push is on its way to Daraja
                proxy.stop()
                late_callback = callback_body(
                    early.json()["checkoutRequestId"], amount=100, receipt="OUTAGE0001"
                )
                answer = await http.post("/api/payment-callback", json=late_callback)
                assert answer.status_code == 200, answer.text
                assert answer.json() == {"ResultCode": 0, "ResultDesc": "Accepted"}
                responses = await asyncio.gather(*purchases)
                # Each buyer is told its ticket and its push, as if nothing had happened.
                for response in responses:
                    assert response.status_code == 200, response.text
                answered = {
                    response.json()["ticketId"]: response.json()["checkoutRequestId"]
                    for response in responses
                }
                answered[early.json()["ticketId"]] = early.json()["checkoutRequestId"]

                async def all_kept() -> bool:
                    kinds = Counter(entry["kind"] for entry in journal_entries(journal))
                    return kinds == {"push": buyers, "callback": buyers + 1}

                await wait_until(all_kept)
        finally:
            first.kill()
        second = start_server(proxied_url, port=port, serve_args=("--no-migrate",), env=env)
        try:
            assert await status_of(sessionmaker, early.json()["ticketId"]) == "Pending"
            proxy.start()  # no request to the service from here on

            async def all_paid() -> bool:
                async with sessionmaker() as session:
                    statuses = (await session.scalars(select(Ticket.payment_status))).all()
                paid = statuses.count(PaymentStatus.PAID) == buyers + 1
                return paid and journal_entries(journal) == []

            await wait_until(all_paid)
        finally:
            second.stop()
    async with sessionmaker() as session:
        rows = await session.execute(select(PushRequest.ticket_id, PushRequest.checkout_request_id))
        recorded = {ticket_id: checkout_id for ticket_id, checkout_id in rows}
        outcomes = Counter((await session.scalars(select(CallbackLog.outcome))).all())
        early_ticket = await session.get_one(Ticket, early.json()["ticketId"])
    assert recorded == answered
    assert outcomes == {CallbackOutcome.APPLIED: buyers + 1}
    assert early_ticket.mpesa_receipt_number == "OUTAGE0001"
