"""A success that arrives after the ticket's seats were released is recorded, never dropped."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
import respx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets.db.models import Ticket
from movietickets.kit.clock import utcnow
from tests.helpers import buy, callback_body, create_movie, ticket
from tests.payments.conftest import accepted

pytestmark = pytest.mark.fake_daraja


async def expire_holds(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(Ticket).values(hold_expires_at=utcnow() - timedelta(seconds=1))
        )


async def test_late_success_with_seats_left_becomes_paid(
    client: httpx.AsyncClient,
    daraja: respx.MockRouter,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    daraja["push"].side_effect = [accepted("ws_CO_late")]
    movie = await create_movie(client, max_tickets=2, price=100)
    ticket_id = (await buy(client, movie["movieId"])).json()["ticketId"]
    await expire_holds(sessionmaker)
    await client.post("/api/mpesa-callback", json=callback_body("ws_CO_late", amount=100))
    paid = await ticket(client, ticket_id)
    assert paid["paymentStatus"] == "Paid"
    assert paid["needsRefund"] is False


async def test_late_success_after_the_seats_were_resold_needs_a_refund(
    client: httpx.AsyncClient,
    daraja: respx.MockRouter,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    daraja["push"].side_effect = [accepted("ws_CO_slowpoke"), accepted("ws_CO_other")]
    movie = await create_movie(client, max_tickets=1, price=100)
    ticket_id = (await buy(client, movie["movieId"])).json()["ticketId"]
    await expire_holds(sessionmaker)
    # The released seat is sold to someone else, who pays.
    other = (await buy(client, movie["movieId"], phone="0798765432")).json()["ticketId"]
    await client.post(
        "/api/mpesa-callback",
        json=callback_body("ws_CO_other", amount=100, receipt="OTHER00001"),
    )
    assert (await ticket(client, other))["paymentStatus"] == "Paid"
    # Then the first customer's payment arrives after all.
    response = await client.post(
        "/api/mpesa-callback", json=callback_body("ws_CO_slowpoke", amount=100)
    )
    assert response.status_code == 200
    late = await ticket(client, ticket_id)
    assert late["paymentStatus"] == "Failed"
    assert late["needsRefund"] is True
    assert late["mpesaReceiptNumber"] == "NLJ7RT61SV"
    assert late["resultCode"] == "0"


async def test_success_after_giving_up_is_applied(
    client: httpx.AsyncClient, daraja: respx.MockRouter
) -> None:
    daraja["push"].side_effect = [httpx.ReadTimeout("slow")]
    movie = await create_movie(client, max_tickets=1, price=100)
    response = await buy(client, movie["movieId"], phone="0711223344")
    assert response.status_code == 504
    ticket_id = response.json()["ticketId"]
    # Daraja's callback carries a CheckoutRequestID we never saw: matched by phone and amount.
    await client.post(
        "/api/mpesa-callback",
        json=callback_body("ws_CO_never_seen", amount=100, phone=254711223344),
    )
    assert (await ticket(client, ticket_id))["paymentStatus"] == "Paid"
