"""End to end over real HTTP: uvicorn serving the app, the simulator calling back over TCP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets.settings import Settings
from tests.conftest import admin_client
from tests.helpers import buy, create_movie, ticket, wait_for_status
from tests.live_server import live_server


@pytest.fixture(scope="module")
def server(database_url: str) -> Iterator[str]:
    with live_server(
        database_url,
        SIMULATOR_CALLBACK_DELAY_SECONDS="0.2",
        MPESA_READ_TIMEOUT_SECONDS="1.5",
        MPESA_CALLBACK_TOKEN="e2e-secret",
    ) as base_url:
        yield base_url


async def test_purchase_pending_then_paid(http: httpx.AsyncClient) -> None:
    movie = await create_movie(http, price=350, max_tickets=5)
    response = await buy(http, movie["movieId"], phone="0712 344 149", quantity=3)
    assert response.status_code == 200, response.text
    ticket_id = response.json()["ticketId"]
    assert (await ticket(http, ticket_id))["paymentStatus"] == "Pending"
    paid = await wait_for_status(http, ticket_id, "Paid")
    assert paid["totalAmount"] == 1050
    assert paid["mpesaReceiptNumber"]
    # 3 of 5 seats are paid: 3 more cannot be sold.
    assert (await buy(http, movie["movieId"], phone="0712349003", quantity=3)).status_code == 409


@pytest.mark.parametrize(
    ("phone", "result_code"),
    [("0712341032", "1032"), ("0712340001", "1"), ("0712342001", "2001"), ("0712340017", "17")],
)
async def test_failure_callback(http: httpx.AsyncClient, phone: str, result_code: str) -> None:
    movie = await create_movie(http)
    response = await buy(http, movie["movieId"], phone=phone)
    failed = await wait_for_status(http, response.json()["ticketId"], "Failed")
    assert failed["resultCode"] == result_code


@pytest.mark.parametrize(("phone", "status"), [("0712349500", 502), ("0712349503", 503)])
async def test_refused_push(http: httpx.AsyncClient, phone: str, status: int) -> None:
    movie = await create_movie(http)
    response = await buy(http, movie["movieId"], phone=phone)
    assert response.status_code == status
    assert (await ticket(http, response.json()["ticketId"]))["paymentStatus"] == "Failed"


async def test_push_timeout_is_504_and_keeps_the_seats(http: httpx.AsyncClient) -> None:
    movie = await create_movie(http, max_tickets=1)
    response = await buy(http, movie["movieId"], phone="0712349001")
    assert response.status_code == 504
    body: dict[str, Any] = response.json()
    assert body["code"] == "payment_outcome_unknown"
    assert (await ticket(http, body["ticketId"]))["paymentStatus"] == "Pending"
    assert (await buy(http, movie["movieId"], phone="0712349003")).status_code == 409


@pytest.mark.parametrize(("phone", "status"), [("0712349003", "Paid"), ("0712341037", "Failed")])
async def test_silent_push_is_settled_by_query(
    http: httpx.AsyncClient, phone: str, status: str
) -> None:
    movie = await create_movie(http)
    body = (await buy(http, movie["movieId"], phone=phone)).json()
    query = {"checkoutRequestId": body["checkoutRequestId"]}
    for _ in range(100):
        answer = (await http.post("/api/query-payment-status", json=query)).json()
        if answer["paymentStatus"] != "Pending":
            assert answer["paymentStatus"] == status
            return
        await asyncio.sleep(0.05)
    raise AssertionError("query never settled the ticket")


async def test_callback_overtaking_the_push_answer(http: httpx.AsyncClient) -> None:
    movie = await create_movie(http)
    response = await buy(http, movie["movieId"], phone="0712349002")
    assert response.status_code == 200
    assert (await ticket(http, response.json()["ticketId"]))["paymentStatus"] == "Paid"


async def test_forged_callback_without_token_is_refused(http: httpx.AsyncClient) -> None:
    movie = await create_movie(http)
    body = (await buy(http, movie["movieId"], phone="0712349003")).json()
    forged = {
        "Body": {
            "stkCallback": {
                "CheckoutRequestID": body["checkoutRequestId"],
                "ResultCode": 0,
                "ResultDesc": "ok",
                "CallbackMetadata": {"Item": [{"Name": "Amount", "Value": 500}]},
            }
        }
    }
    response = await http.post("/api/mpesa-callback", json=forged)
    assert response.status_code == 403
    assert (await ticket(http, body["ticketId"]))["paymentStatus"] == "Pending"


async def test_the_log_never_shows_the_callback_secret(
    database_url: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    tmp_path: Path,
) -> None:
    log_path = tmp_path / "server.log"
    secret = "log-secret-5bd1c0"
    with live_server(
        database_url,
        log_path=log_path,
        LOG_LEVEL="INFO",
        SIMULATOR_CALLBACK_DELAY_SECONDS="0.1",
        MPESA_CALLBACK_TOKEN=secret,
    ) as base_url:
        async with admin_client(sessionmaker, settings, base_url=base_url, timeout=10) as http:
            movie = await create_movie(http)
            response = await buy(http, movie["movieId"], phone="0712344149")
            await wait_for_status(http, response.json()["ticketId"], "Paid")
    log = log_path.read_text()
    assert "delivered: HTTP 200" in log  # the callback was sent and logged
    assert secret not in log
