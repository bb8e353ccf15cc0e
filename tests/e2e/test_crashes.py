"""The service killed (SIGKILL) while pushes are in flight, then restarted on the same
database, with Daraja (the simulator, in a process of its own) carrying on meanwhile: a retry
with the same Idempotency-Key resolves the first attempt, never starting a second ticket or
push, and a push whose answer was lost ends Unconfirmed until its callback settles it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets.db.models import Movie, PushRequest, Ticket
from movietickets.settings import Settings
from tests.conftest import admin_headers
from tests.helpers import callback_body, create_movie
from tests.live_server import daraja_simulator, free_port, start_server

pytestmark = pytest.mark.timeout(240)

BUYERS = 8
# Daraja answers a push after 5 s (real Daraja: 1-3 s), so the service is killed while every
# push is in flight; its callbacks follow 6 s after the push. The simulator is paused from the
# crash until the service is back, so that they are not lost however long the restart takes.
PUSH_DELAY = 5.0
CALLBACK_DELAY = 6.0
SERVICE = {
    "MPESA_CONNECT_TIMEOUT_SECONDS": "1",
    "MPESA_READ_TIMEOUT_SECONDS": "10",
    "DB_POOL_TIMEOUT_SECONDS": "2",
    "RECONCILE_IN_SERVICE": "true",
    "RECONCILE_GIVE_UP_SECONDS": "2",
    "RECONCILE_POLL_SECONDS": "0.2",
}
LOST_PHONE = "0712349001"  # the simulator never answers this push (nor calls back)


def keyed_order(movie_id: int, n: int) -> dict[str, Any]:
    return {
        "movieId": movie_id,
        "customerName": f"Buyer {n}",
        "phoneNumber": f"07120{n}4149",  # the simulator's "paid"
        "quantity": 1,
    }


def msisdn(phone: str) -> str:
    return "254" + phone[1:]


async def eventually(condition: Callable[[], Awaitable[bool]], seconds: float = 60) -> None:
    """Polls another process's work with a deadline generous for a loaded machine."""
    async with asyncio.timeout(seconds):
        while not await condition():  # noqa: ASYNC110 (polling another process's work)
            await asyncio.sleep(0.1)


async def retry_until_answered(
    http: httpx.AsyncClient, body: dict[str, Any], key: str
) -> httpx.Response:
    """Retries as a client would: while the key is in use, or the outcome unknown (until the
    callback, matched by phone and amount, tells it)."""
    async with asyncio.timeout(90):
        while True:
            response = await http.post(
                "/api/make-payment", json=body, headers={"Idempotency-Key": key}
            )
            if response.status_code == 200:
                return response
            assert response.status_code in (409, 504), response.text
            code = response.json()["code"]
            assert code in ("idempotency_key_in_use", "payment_outcome_unknown"), code
            await asyncio.sleep(0.5)


async def ticket_of(http: httpx.AsyncClient, ticket_id: int) -> dict[str, Any]:
    response = await http.get(f"/api/tickets/{ticket_id}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()["ticket"]
    return found


async def wait_for_status(http: httpx.AsyncClient, ticket_id: int, status: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def reached() -> bool:
        found.update(await ticket_of(http, ticket_id))
        return bool(found["paymentStatus"] == status)

    await eventually(reached)
    return found


async def test_a_crash_while_pushes_are_in_flight_loses_no_payment_and_charges_once(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    headers = await admin_headers(sessionmaker, settings)
    port = free_port()  # the same after the restart: Daraja calls back where it was told
    with daraja_simulator(callback_delay=CALLBACK_DELAY, push_delay=PUSH_DELAY) as daraja:
        env = {**daraja.settings, **SERVICE}
        # The fixture migrated the database.
        first = start_server(database_url, port=port, serve_args=("--no-migrate",), env=env)
        try:
            async with httpx.AsyncClient(base_url=first.url, timeout=60, headers=headers) as http:
                movie_id = (await create_movie(http, price=500))["movieId"]
                single_seat = (await create_movie(http, price=500, max_tickets=1))["movieId"]
                attempts = [
                    asyncio.create_task(
                        http.post(
                            "/api/make-payment",
                            json=keyed_order(movie_id, n),
                            headers={"Idempotency-Key": f"crash-key-{n}"},
                        )
                    )
                    for n in range(BUYERS)
                ]
                lost = {
                    "movieId": single_seat,
                    "customerName": "Lost Answer",
                    "phoneNumber": LOST_PHONE,
                    "quantity": 1,
                }
                attempts.append(asyncio.create_task(http.post("/api/make-payment", json=lost)))

                async def every_push_at_daraja() -> bool:
                    accepted = daraja.logged("STK push accepted")
                    return accepted == BUYERS and daraja.logged("STK push held open") == 1

                await eventually(every_push_at_daraja)
                first.kill()  # before Daraja answers any of them
                daraja.pause()
                crashed = await asyncio.gather(*attempts, return_exceptions=True)
        finally:
            first.kill()
        assert all(isinstance(outcome, httpx.TransportError) for outcome in crashed), crashed

        second = start_server(database_url, port=port, serve_args=("--no-migrate",), env=env)
        daraja.resume()
        try:
            async with httpx.AsyncClient(base_url=second.url, timeout=60, headers=headers) as http:
                # 1. Each buyer retries with its key: told its first ticket and push.
                answers = await asyncio.gather(
                    *(
                        retry_until_answered(http, keyed_order(movie_id, n), f"crash-key-{n}")
                        for n in range(BUYERS)
                    )
                )
                for answer in answers:
                    assert answer.headers["idempotent-replayed"] == "true"
                    token = answer.json()["ticketAccessToken"]
                    opened = await http.get(
                        f"/api/tickets/{answer.json()['ticketId']}",
                        headers={"X-Ticket-Token": token, "Authorization": ""},
                    )
                    assert opened.json()["ticket"]["piiMasked"] is False

                # 2. The push whose answer was lost: Unconfirmed, its seat released.
                async with sessionmaker() as session:
                    lost_id = await session.scalar(
                        select(Ticket.ticket_id).where(Ticket.phone_number == msisdn(LOST_PHONE))
                    )
                assert lost_id is not None
                unconfirmed = await wait_for_status(http, lost_id, "Unconfirmed")
                assert (unconfirmed["resultCode"], unconfirmed["needsRefund"]) == (None, False)
                assert "outcome unknown" in unconfirmed["resultDesc"]
                anomalies = (await http.get("/api/admin/anomalies")).json()
                assert [t["ticketId"] for t in anomalies["unconfirmed"]] == [lost_id]
                resale = {**lost, "customerName": "Next", "phoneNumber": "0712341032"}
                resold = await http.post("/api/make-payment", json=resale)
                assert resold.status_code == 200, resold.text  # the seat was free again
                await wait_for_status(http, resold.json()["ticketId"], "Failed")  # cancelled
                # M-Pesa's success arrives after all (a late callback): still paid.
                late = callback_body(
                    "ws_CO_late_success", amount=500, phone=int(msisdn(LOST_PHONE))
                )
                assert (await http.post("/api/payment-callback", json=late)).status_code == 200
                paid = await wait_for_status(http, lost_id, "Paid")
                assert paid["mpesaReceiptNumber"] == "NLJ7RT61SV"
                anomalies = (await http.get("/api/admin/anomalies")).json()
                assert anomalies["unconfirmed"] == []
        finally:
            second.stop()
        # Never a second push: the keyed buyers' and the resale's.
        assert daraja.logged("STK push accepted") == BUYERS + 1

    async with sessionmaker() as session:
        tickets = (
            await session.execute(
                select(Ticket.phone_number, Ticket.ticket_id, Ticket.payment_status).where(
                    Ticket.movie_id == movie_id
                )
            )
        ).all()
        pushes = dict(
            (
                await session.execute(
                    select(PushRequest.ticket_id, PushRequest.checkout_request_id)
                )
            ).all()
        )
        seats_paid = await session.scalar(
            select(Movie.seats_paid).where(Movie.movie_id == movie_id)
        )
    # One ticket per buyer, never a second push; each Paid once, by Daraja's one callback.
    assert sorted(phone for phone, _, _ in tickets) == sorted(
        msisdn(keyed_order(movie_id, n)["phoneNumber"]) for n in range(BUYERS)
    )
    assert {str(status) for _, _, status in tickets} == {"Paid"}
    assert seats_paid == BUYERS
    ticket_of_phone = {phone: ticket_id for phone, ticket_id, _ in tickets}
    for n, answer in enumerate(answers):
        ticket_id = ticket_of_phone[msisdn(keyed_order(movie_id, n)["phoneNumber"])]
        assert answer.json()["ticketId"] == ticket_id
        assert answer.json()["checkoutRequestId"] == pushes[ticket_id]
        assert answer.json()["paymentStatus"] in ("Pending", "Paid")
