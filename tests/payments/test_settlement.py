"""Settlement: a success that arrives after the ticket's seats were released is recorded,
never dropped; a receipt number settles one ticket at most."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
import respx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets.db.engine import locked_transaction
from movietickets.db.models import CallbackLog, Ticket
from movietickets.kit.clock import utcnow
from movietickets.tickets.repository import TicketRepository
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


async def two_pending_tickets(
    client: httpx.AsyncClient, daraja: respx.MockRouter, round_: int = 0
) -> list[int]:
    """Pending tickets of two showings (so no row lock they share orders their settlement),
    pushed as ws_CO_a{round_} and ws_CO_b{round_}."""
    daraja["push"].side_effect = [accepted(f"ws_CO_a{round_}"), accepted(f"ws_CO_b{round_}")]
    ids = []
    for phone in ("0712340001", "0712340002"):
        movie = await create_movie(client, price=100)
        response = await buy(client, movie["movieId"], phone=phone)
        assert response.status_code == 200, response.text
        ids.append(response.json()["ticketId"])
    return ids


async def outcomes(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[int | None, str]:
    async with sessionmaker() as session:
        entries = (await session.scalars(select(CallbackLog))).all()
    return {entry.ticket_id: entry.outcome.value for entry in entries}


async def test_a_receipt_settles_one_ticket_at_most(
    client: httpx.AsyncClient,
    daraja: respx.MockRouter,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    first, second = await two_pending_tickets(client, daraja)
    for checkout_id in ("ws_CO_a0", "ws_CO_b0"):
        response = await client.post(
            "/api/payment-callback", json=callback_body(checkout_id, amount=100, receipt="RCPT1")
        )
        assert response.json() == {"ResultCode": 0, "ResultDesc": "Accepted"}
    assert (await ticket(client, first))["mpesaReceiptNumber"] == "RCPT1"
    again = await ticket(client, second)
    assert (again["paymentStatus"], again["mpesaReceiptNumber"]) == ("Pending", None)
    assert await outcomes(sessionmaker) == {first: "applied", second: "duplicate_receipt"}
    found = (await client.get("/api/admin/anomalies")).json()
    [reported] = found["duplicateReceipts"]
    assert (reported["ticketId"], reported["outcome"]) == (second, "duplicate_receipt")
    assert "RCPT1" in reported["body"]
    # Nor does a receipt of another ticket ride on a wrong amount, or on blanks around it.
    for body in (
        callback_body("ws_CO_b0", amount=1, receipt="RCPT1"),
        callback_body("ws_CO_b0", amount=100, receipt=" RCPT1 "),
    ):
        await client.post("/api/payment-callback", json=body)
    assert (await ticket(client, second))["paymentStatus"] == "Pending"


async def test_concurrent_successes_with_one_receipt_pay_one_ticket(
    client: httpx.AsyncClient,
    daraja: respx.MockRouter,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    for round_ in range(5):
        tickets = await two_pending_tickets(client, daraja, round_)
        responses = await asyncio.gather(
            *(
                client.post(
                    "/api/payment-callback",
                    json=callback_body(checkout_id, amount=100, receipt=f"RACE{round_}"),
                )
                for checkout_id in (f"ws_CO_a{round_}", f"ws_CO_b{round_}")
            )
        )
        assert [response.status_code for response in responses] == [200, 200]
        statuses = sorted([(await ticket(client, t))["paymentStatus"] for t in tickets])
        assert statuses == ["Paid", "Pending"], round_
        settled = await outcomes(sessionmaker)
        assert sorted(settled[t] for t in tickets) == ["applied", "duplicate_receipt"]


async def test_the_unique_constraint_decides_a_race_the_rule_cannot_see(
    client: httpx.AsyncClient,
    daraja: respx.MockRouter,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Two transactions write one receipt: the second waits for the first, then is refused,
    and its transaction (and row locks) remain usable."""
    first, second = await two_pending_tickets(client, daraja)

    async def take_later(ticket_id: int) -> tuple[bool, str | None]:
        async with locked_transaction(sessionmaker) as session:
            tickets = TicketRepository(session)
            taken = await tickets.take_receipt(ticket_id, "RCPT9")
            locked = await tickets.get_for_update(ticket_id)
            assert locked is not None
            locked.result_desc = "still usable"
            return taken, locked.mpesa_receipt_number

    async with locked_transaction(sessionmaker) as session:
        assert await TicketRepository(session).take_receipt(first, "RCPT9")
        later = asyncio.create_task(take_later(second))
        await asyncio.sleep(0.2)  # the second transaction reaches its write, and waits
    assert await later == (False, None)
    assert (await ticket(client, first))["mpesaReceiptNumber"] == "RCPT9"
    assert (await ticket(client, second))["resultDesc"] == "still usable"
