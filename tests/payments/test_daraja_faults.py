"""Daraja answering 500, 503, garbage or nothing, on OAuth, push and query.

Whatever Daraja does: no 500 from our API, and no ticket is left that nothing can resolve
(the reconciler settles or gives up on every Pending ticket).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
import respx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets.db.models import PaymentStatus, Ticket
from movietickets.payments.reconciler import Reconciler
from tests.helpers import buy, create_movie, ticket
from tests.payments.conftest import accepted

pytestmark = pytest.mark.fake_daraja

FAULTS: dict[str, httpx.Response | type[Exception]] = {
    "500 empty": httpx.Response(500),
    "503 spike arrest": httpx.Response(
        503, json={"requestId": "1", "errorCode": "500.003.02", "errorMessage": "Spike arrest"}
    ),
    "503 html": httpx.Response(503, text="<html>Service Unavailable</html>"),
    "200 garbage": httpx.Response(200, text="{garbage"),
    "read timeout": httpx.ReadTimeout,
    "connect error": httpx.ConnectError,
}


async def unresolved_after_reconciling(
    app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
) -> list[int]:
    resources = app.state.resources
    await asyncio.sleep(0.05)  # past RECONCILE_GIVE_UP_SECONDS (0.01 s here)
    await Reconciler(resources.sessionmaker, resources.daraja, resources.settings).run_once()
    async with sessionmaker() as session:
        pending = await session.scalars(
            select(Ticket.ticket_id).where(Ticket.payment_status == PaymentStatus.PENDING)
        )
        return list(pending.all())


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
@pytest.mark.parametrize("where", ["oauth", "push"])
async def test_faults_before_the_push_is_accepted(
    client: httpx.AsyncClient,
    app: FastAPI,
    daraja: respx.MockRouter,
    sessionmaker: async_sessionmaker[AsyncSession],
    where: str,
    fault: httpx.Response | type[Exception],
) -> None:
    daraja[where].side_effect = [fault] if isinstance(fault, httpx.Response) else fault
    movie = await create_movie(client, max_tickets=1)
    response = await buy(client, movie["movieId"])
    assert response.status_code in (502, 503, 504), response.text
    body = response.json()
    current = await ticket(client, body["ticketId"])
    if response.status_code == 504:
        # The prompt may be on the phone: the seat stays held until settled or given up.
        assert current["paymentStatus"] == "Pending"
    else:
        assert current["paymentStatus"] == "Failed"
    assert await unresolved_after_reconciling(app, sessionmaker) == []


@pytest.mark.parametrize("fault", FAULTS.values(), ids=FAULTS.keys())
async def test_faults_on_query(
    client: httpx.AsyncClient,
    app: FastAPI,
    daraja: respx.MockRouter,
    sessionmaker: async_sessionmaker[AsyncSession],
    fault: httpx.Response | type[Exception],
) -> None:
    daraja["push"].side_effect = [accepted("ws_CO_fault")]
    daraja["query"].side_effect = [fault] if isinstance(fault, httpx.Response) else fault
    movie = await create_movie(client)
    ticket_id = (await buy(client, movie["movieId"])).json()["ticketId"]
    response = await client.post(
        "/api/query-payment-status", json={"checkoutRequestId": "ws_CO_fault"}
    )
    assert response.status_code in (502, 503, 504), response.text
    assert response.json()["ticketId"] == ticket_id
    assert (await ticket(client, ticket_id))["paymentStatus"] == "Pending"
    daraja["query"].side_effect = fault if not isinstance(fault, httpx.Response) else None
    daraja["query"].return_value = fault if isinstance(fault, httpx.Response) else None
    assert await unresolved_after_reconciling(app, sessionmaker) == []
    given_up = await ticket(client, ticket_id)
    assert given_up["paymentStatus"] == "Failed"
    assert given_up["resultCode"] is None
