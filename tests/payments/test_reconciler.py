"""The reconciler: backing off, never downgrading, two instances at once, and pushes whose
answer never came (Unconfirmed, never plain Failed)."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import httpx
import pytest
import respx
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets.db.engine import create_engine, create_sessionmaker
from movietickets.db.models import PushRequest, Ticket
from movietickets.kit.clock import utcnow
from movietickets.payments.callbacks import record_pushes
from movietickets.payments.reconciler import Reconciler
from movietickets.payments.repository import NewPush
from movietickets.settings import Settings
from tests.helpers import buy, callback_body, create_movie, ticket
from tests.payments.conftest import accepted, query_answer

pytestmark = pytest.mark.fake_daraja

PROCESSING = httpx.Response(
    500,
    json={
        "requestId": "1",
        "errorCode": "500.001.1001",
        "errorMessage": "The transaction is being processed",
    },
)


def reconciler(app: FastAPI, **changes: object) -> Reconciler:
    resources = app.state.resources
    settings = resources.settings.model_copy(update=changes)
    return Reconciler(resources.sessionmaker, resources.daraja, settings)


async def make_due(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(PushRequest).values(next_query_at=utcnow() - timedelta(seconds=1))
        )


async def age_tickets(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """Every ticket was bought long before RECONCILE_GIVE_UP_SECONDS ago."""
    async with sessionmaker() as session, session.begin():
        await session.execute(update(Ticket).values(date_created=utcnow() - timedelta(hours=1)))


async def test_being_processed_keeps_waiting_and_backs_off(
    client: httpx.AsyncClient,
    app: FastAPI,
    daraja: respx.MockRouter,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    daraja["push"].side_effect = [accepted("ws_CO_wait")]
    daraja["query"].return_value = PROCESSING
    movie = await create_movie(client)
    ticket_id = (await buy(client, movie["movieId"])).json()["ticketId"]
    patient = reconciler(app, reconcile_give_up_seconds=60, reconcile_retry_seconds=10)
    delays = []
    for _ in range(3):
        await make_due(sessionmaker)
        report = await patient.run_once()
        assert report.queried == 1
        async with sessionmaker() as session:
            push = (await session.scalars(select(PushRequest))).one()
            assert push.next_query_at is not None
            delays.append(round((push.next_query_at - utcnow()).total_seconds()))
    assert delays == [10, 20, 40]  # doubling
    assert (await ticket(client, ticket_id))["paymentStatus"] == "Pending"
    # Not due yet: nothing is queried.
    assert (await patient.run_once()).queried == 0


async def test_a_confirmed_success_is_never_downgraded(
    client: httpx.AsyncClient,
    app: FastAPI,
    daraja: respx.MockRouter,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    daraja["push"].side_effect = [accepted("ws_CO_paid")]
    daraja["query"].return_value = query_answer("ws_CO_paid", "1032")
    movie = await create_movie(client, price=500)
    ticket_id = (await buy(client, movie["movieId"])).json()["ticketId"]
    await client.post("/api/mpesa-callback", json=callback_body("ws_CO_paid", amount=500))
    assert (await ticket(client, ticket_id))["paymentStatus"] == "Paid"
    response = await client.post(
        "/api/query-payment-status", json={"checkoutRequestId": "ws_CO_paid"}
    )
    assert response.json()["paymentStatus"] == "Paid"
    assert daraja["query"].call_count == 0  # final: answered from the database
    await make_due(sessionmaker)
    await reconciler(app).run_once()
    assert (await ticket(client, ticket_id))["paymentStatus"] == "Paid"


async def test_two_reconcilers_at_once_query_each_push_once(
    client: httpx.AsyncClient,
    app: FastAPI,
    daraja: respx.MockRouter,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    tickets = 12
    daraja["push"].side_effect = [accepted(f"ws_CO_{n}") for n in range(tickets)]
    queried: Counter[str] = Counter()

    def answer(request: httpx.Request) -> httpx.Response:
        checkout_id = httpx.Request("POST", "/", content=request.content).read().decode()
        checkout_id = checkout_id.split('"CheckoutRequestID":')[1].split('"')[1]
        queried[checkout_id] += 1
        return query_answer(checkout_id)

    daraja["query"].side_effect = answer
    movie = await create_movie(client, max_tickets=100)
    for n in range(tickets):
        assert (await buy(client, movie["movieId"], phone=f"0712{n:06d}")).status_code == 200
    await make_due(sessionmaker)

    # Two instances: separate engines, so their transactions really run concurrently.
    resources = app.state.resources
    other_engine = create_engine(settings)
    try:
        first = Reconciler(resources.sessionmaker, resources.daraja, settings)
        second = Reconciler(create_sessionmaker(other_engine), resources.daraja, settings)
        reports = await asyncio.gather(first.run_once(), second.run_once())
    finally:
        await other_engine.dispose()
    assert sum(report.queried for report in reports) == tickets
    assert queried == Counter({f"ws_CO_{n}": 1 for n in range(tickets)})
    async with sessionmaker() as session:
        attempts = (await session.scalars(select(PushRequest.query_attempts))).all()
    assert set(attempts) == {1}


async def test_a_push_without_an_answer_ends_unconfirmed_never_failed(
    client: httpx.AsyncClient,
    app: FastAPI,
    daraja: respx.MockRouter,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The push may have reached the phone, but no CheckoutRequestID came back to query."""
    daraja["push"].side_effect = [httpx.ReadTimeout("no answer"), accepted("ws_CO_next")]
    movie = await create_movie(client, price=500, max_tickets=1)
    silent = await buy(client, movie["movieId"], phone="0712340001")
    assert silent.status_code == 504
    ticket_id = silent.json()["ticketId"]
    await age_tickets(sessionmaker)
    report = await reconciler(app).run_once()
    assert (report.unconfirmed, report.gave_up) == (1, 0)
    unconfirmed = await ticket(client, ticket_id)
    assert unconfirmed["paymentStatus"] == "Unconfirmed"
    assert unconfirmed["resultCode"] is None
    assert "outcome unknown" in unconfirmed["resultDesc"]
    anomalies = (await client.get("/api/admin/anomalies")).json()
    assert [t["ticketId"] for t in anomalies["unconfirmed"]] == [ticket_id]
    listed = await client.get("/api/admin/tickets", params={"status": "Unconfirmed"})
    assert [t["ticketId"] for t in listed.json()["tickets"]] == [ticket_id]
    # Its seat was released, and sold again; the movie cannot be deleted meanwhile.
    assert (await buy(client, movie["movieId"], phone="0712340002")).status_code == 200
    patient = reconciler(app, reconcile_give_up_seconds=60)
    assert (await patient.run_once()).unconfirmed == 0  # nothing more to do
    # The customer had paid after all: recorded, and owed a refund (the seat is gone).
    late = callback_body("ws_CO_late", amount=500, phone=254712340001, receipt="LATE000001")
    assert (await client.post("/api/payment-callback", json=late)).status_code == 200
    settled = await ticket(client, ticket_id)
    assert settled["paymentStatus"] == "Failed"
    assert settled["needsRefund"] is True
    assert settled["mpesaReceiptNumber"] == "LATE000001"
    anomalies = (await client.get("/api/admin/anomalies")).json()
    assert anomalies["unconfirmed"] == []
    assert [t["ticketId"] for t in anomalies["refundsDue"]] == [ticket_id]


async def test_an_unconfirmed_ticket_is_paid_by_a_late_success_while_its_seats_are_free(
    client: httpx.AsyncClient,
    app: FastAPI,
    daraja: respx.MockRouter,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    daraja["push"].side_effect = [httpx.ReadTimeout("no answer")]
    movie = await create_movie(client, price=500, max_tickets=1)
    ticket_id = (await buy(client, movie["movieId"], phone="0712340003")).json()["ticketId"]
    await age_tickets(sessionmaker)
    await reconciler(app).run_once()
    assert (await ticket(client, ticket_id))["paymentStatus"] == "Unconfirmed"
    deleted = await client.delete(f"/api/movies/{movie['movieId']}")
    assert deleted.status_code == 409  # an Unconfirmed ticket may still be paid
    assert "unconfirmed" in deleted.json()["error"]
    late = callback_body("ws_CO_late_2", amount=500, phone=254712340003, receipt="LATE000002")
    assert (await client.post("/api/payment-callback", json=late)).status_code == 200
    paid = await ticket(client, ticket_id)
    assert (paid["paymentStatus"], paid["needsRefund"]) == ("Paid", False)
    assert (await client.get(f"/api/movies/{movie['movieId']}")).json()["movie"]["max_tickets"] == 1
    sold_out = await buy(client, movie["movieId"], phone="0712340004")
    assert sold_out.json()["code"] == "sold_out"


async def test_an_unconfirmed_ticket_whose_push_is_recorded_late_is_queried(
    client: httpx.AsyncClient,
    app: FastAPI,
    daraja: respx.MockRouter,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    daraja["push"].side_effect = [httpx.ReadTimeout("no answer")]
    daraja["query"].return_value = query_answer("ws_CO_from_journal", "0")
    movie = await create_movie(client, price=500)
    ticket_id = (await buy(client, movie["movieId"])).json()["ticketId"]
    await age_tickets(sessionmaker)
    await reconciler(app).run_once()
    assert (await ticket(client, ticket_id))["paymentStatus"] == "Unconfirmed"
    # The push's answer reaches the database at last (replayed from the journal).
    async with sessionmaker() as session, session.begin():
        now = utcnow()
        await record_pushes(
            session,
            [NewPush(ticket_id, "ws_CO_from_journal", "m-1", now - timedelta(seconds=1), now)],
        )
    assert (await reconciler(app).run_once()).queried == 1
    paid = await ticket(client, ticket_id)
    assert paid["paymentStatus"] == "Paid"
    assert paid["resultCode"] == "0"
