"""The service killed (SIGKILL) while pushes are in flight, then restarted on the same
database, with Daraja (the simulator, in a process of its own) carrying on meanwhile:
a retry resolves the first attempt, and a push whose answer was lost ends Unconfirmed."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets.db.models import Movie, PushRequest, Ticket
from movietickets.settings import Settings
from tests.conftest import admin_headers
from tests.helpers import callback_body, create_movie
from tests.live_server import daraja_simulator, free_port, start_server

# Daraja answers a push after 1.5 s (real Daraja: 1-3 s), so the service can be killed while
# every push is in flight. Its callbacks follow 3 s after the push; the simulator is paused
# from the crash until the service is back, so that they are not lost however long the
# restart takes on a busy machine.
PUSH_DELAY = 1.5
CALLBACK_DELAY = 3.0
SHORT_TIMEOUTS = {
    "MPESA_CONNECT_TIMEOUT_SECONDS": "1",
    "MPESA_READ_TIMEOUT_SECONDS": "3",
    "DB_POOL_TIMEOUT_SECONDS": "2",
}


async def tickets_by_phone(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> dict[str, list[tuple[int, str]]]:
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(Ticket.phone_number, Ticket.ticket_id, Ticket.payment_status)
            )
        ).all()
    found: dict[str, list[tuple[int, str]]] = {}
    for phone, ticket_id, status in rows:
        found.setdefault(phone, []).append((ticket_id, str(status)))
    return found


async def wait_for_tickets(sessionmaker: async_sessionmaker[AsyncSession], count: int) -> None:
    async with asyncio.timeout(20):
        while True:
            async with sessionmaker() as session:
                stored = await session.scalar(select(func.count()).select_from(Ticket))
            if stored == count:
                return
            await asyncio.sleep(0.05)


def order(movie_id: int, n: int) -> dict[str, Any]:
    return {
        "movieId": movie_id,
        "customerName": f"Buyer {n}",
        "phoneNumber": f"07120{n}4149",  # the simulator's "paid"
        "quantity": 1,
    }


async def test_a_retry_after_a_crash_resolves_the_first_attempt(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    buyers = 8
    headers = await admin_headers(sessionmaker, settings)
    port = free_port()  # the same after the restart: Daraja calls back where it was told
    with daraja_simulator(callback_delay=CALLBACK_DELAY, push_delay=PUSH_DELAY) as daraja:
        env = {**daraja.settings, **SHORT_TIMEOUTS}
        first = start_server(database_url, port=port, extra_env=env)
        try:
            async with httpx.AsyncClient(base_url=first.url, timeout=30, headers=headers) as http:
                movie_id = (await create_movie(http))["movieId"]
                attempts = [
                    asyncio.create_task(
                        http.post(
                            "/api/make-payment",
                            json=order(movie_id, n),
                            headers={"Idempotency-Key": f"crash-key-{n}"},
                        )
                    )
                    for n in range(buyers)
                ]
                # Every ticket is committed and its push sent: Daraja is about to answer.
                await wait_for_tickets(sessionmaker, buyers)
                await asyncio.sleep(0.5)
                first.kill()
                daraja.pause()
                lost = await asyncio.gather(*attempts, return_exceptions=True)
        finally:
            first.kill()
        assert all(isinstance(outcome, httpx.TransportError) for outcome in lost), lost
        before = await tickets_by_phone(sessionmaker)
        assert all(len(tickets) == 1 for tickets in before.values())

        second = start_server(database_url, port=port, serve_args=("--no-migrate",), extra_env=env)
        daraja.resume()
        try:
            async with httpx.AsyncClient(base_url=second.url, timeout=30) as http:
                answers = await asyncio.gather(
                    *(retry_until_answered(http, order(movie_id, n), n) for n in range(buyers))
                )
        finally:
            second.stop()

    after = await tickets_by_phone(sessionmaker)
    async with sessionmaker() as session:
        rows = await session.execute(select(PushRequest.ticket_id, PushRequest.checkout_request_id))
        pushes = {ticket_id: checkout_id for ticket_id, checkout_id in rows}
        seats_paid = await session.scalar(
            select(Movie.seats_paid).where(Movie.movie_id == movie_id)
        )
    # One ticket per buyer, never a second push; each Paid once, by Daraja's one callback.
    assert {phone: len(tickets) for phone, tickets in after.items()} == {
        order(movie_id, n)["phoneNumber"].replace("0", "254", 1): 1 for n in range(buyers)
    }
    assert all(status == "Paid" for tickets in after.values() for _, status in tickets)
    assert seats_paid == buyers
    for n, answer in enumerate(answers):
        phone = order(movie_id, n)["phoneNumber"].replace("0", "254", 1)
        ((ticket_id, _),) = after[phone]
        assert answer.status_code == 200, answer.text
        assert answer.headers["idempotent-replayed"] == "true"
        body = answer.json()
        assert body["ticketId"] == ticket_id
        assert body["checkoutRequestId"] == pushes[ticket_id]
        assert body["ticketAccessToken"]


async def retry_until_answered(
    http: httpx.AsyncClient, body: dict[str, Any], n: int
) -> httpx.Response:
    """Retries as a client would: after Retry-After while in use; until 200 while the outcome
    is unknown (the callback, matched by phone and amount, tells it)."""
    async with asyncio.timeout(CALLBACK_DELAY + 20):
        while True:
            response = await http.post(
                "/api/make-payment", json=body, headers={"Idempotency-Key": f"crash-key-{n}"}
            )
            if response.status_code == 200:
                return response
            assert response.status_code in (409, 504), response.text
            if response.status_code == 504:
                assert response.json()["code"] == "payment_outcome_unknown"
                assert response.json()["ticketId"]
            await asyncio.sleep(0.5)


async def test_a_push_whose_answer_was_lost_is_unconfirmed_until_its_callback(
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    headers = await admin_headers(sessionmaker, settings)
    reconciling = {
        "RECONCILE_IN_SERVICE": "true",
        "RECONCILE_GIVE_UP_SECONDS": "2",
        "RECONCILE_POLL_SECONDS": "0.2",
    }
    port = free_port()
    # A phone ending 9003: paid, but Daraja's callback is lost; nothing can be queried either,
    # since the CheckoutRequestID never reached the database.
    with daraja_simulator(callback_delay=1, push_delay=PUSH_DELAY) as daraja:
        env = {**daraja.settings, **SHORT_TIMEOUTS, **reconciling}
        first = start_server(database_url, port=port, extra_env=env)
        try:
            async with httpx.AsyncClient(base_url=first.url, timeout=30, headers=headers) as http:
                movie = await create_movie(http, price=500, max_tickets=1)
                attempt = asyncio.create_task(
                    http.post(
                        "/api/make-payment",
                        json={
                            "movieId": movie["movieId"],
                            "customerName": "Lost Answer",
                            "phoneNumber": "0712349003",
                            "quantity": 1,
                        },
                    )
                )
                await wait_for_tickets(sessionmaker, 1)
                await asyncio.sleep(0.3)
                first.kill()
                assert isinstance(
                    (await asyncio.gather(attempt, return_exceptions=True))[0],
                    httpx.TransportError,
                )
        finally:
            first.kill()
        second = start_server(database_url, port=port, serve_args=("--no-migrate",), extra_env=env)
        try:
            async with httpx.AsyncClient(base_url=second.url, timeout=30, headers=headers) as http:
                ((ticket_id, _),) = (await tickets_by_phone(sessionmaker))["254712349003"]
                ticket = await wait_for(http, ticket_id, "Unconfirmed")
                assert ticket["resultCode"] is None
                assert "outcome unknown" in ticket["resultDesc"]
                anomalies = (await http.get("/api/admin/anomalies")).json()
                assert [t["ticketId"] for t in anomalies["unconfirmed"]] == [ticket_id]
                # Its seat was released: another buyer may have it.
                other = {
                    "movieId": movie["movieId"],
                    "customerName": "Next",
                    "phoneNumber": "0712341032",  # cancels: the seat comes back
                    "quantity": 1,
                }
                resold = await http.post("/api/make-payment", json=other)
                assert resold.status_code == 200, resold.text
                await wait_for(http, resold.json()["ticketId"], "Failed")
                # M-Pesa's success arrives after all (a late or resent callback): still paid.
                late = callback_body("ws_CO_late_success", amount=500, phone=254712349003)
                assert (await http.post("/api/payment-callback", json=late)).status_code == 200
                paid = await wait_for(http, ticket_id, "Paid")
                assert paid["mpesaReceiptNumber"] == "NLJ7RT61SV"
                anomalies = (await http.get("/api/admin/anomalies")).json()
                assert anomalies["unconfirmed"] == []
        finally:
            second.stop()


async def wait_for(http: httpx.AsyncClient, ticket_id: int, status: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            response = await http.get(f"/api/tickets/{ticket_id}")
            if response.status_code == 200 and response.json()["ticket"]["paymentStatus"] == status:
                ticket: dict[str, Any] = response.json()["ticket"]
                return ticket
            await asyncio.sleep(0.1)


pytestmark = pytest.mark.timeout(120)
