"""make-payment, query-payment-status and tickets, through the built-in simulator."""

from __future__ import annotations

import asyncio
from collections import Counter
from ipaddress import ip_network
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets.db.models import Ticket
from movietickets.settings import Settings
from tests.helpers import buy, create_movie, ticket, wait_for_status

PAST = "2020-01-01T18:00:00.000Z"


async def count_tickets(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return (await session.scalar(select(func.count()).select_from(Ticket))) or 0


async def test_purchase_goes_pending_then_paid(client: httpx.AsyncClient) -> None:
    movie = await create_movie(client, price=500)
    response = await buy(client, movie["movieId"], phone="+254 712 344 149", quantity=2)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == "Payment initiated successfully"
    assert body["checkoutRequestId"].startswith("ws_CO_")
    assert body["responseDescription"] == "Success. Request accepted for processing"

    paid = await wait_for_status(client, body["ticketId"], "Paid")
    assert paid["phoneNumber"] == "254712344149"
    assert paid["quantity"] == 2
    assert paid["totalAmount"] == 1000
    assert len(paid["mpesaReceiptNumber"]) == 10
    assert paid["transactionDate"].endswith("Z")
    assert paid["resultCode"] == "0"
    assert paid["movie"]["movieId"] == movie["movieId"]
    assert set(paid["movie"]) == {
        "movieId",
        "title",
        "description",
        "showTime",
        "price",
        "max_tickets",
        "imageUrl",
    }

    status = await client.post(
        "/api/query-payment-status", json={"checkoutRequestId": body["checkoutRequestId"]}
    )
    assert status.status_code == 200
    assert status.json()["ResultCode"] == "0"
    assert status.json()["paymentStatus"] == "Paid"


@pytest.mark.parametrize(
    ("phone", "result_code"),
    [("0712341032", "1032"), ("0712340001", "1"), ("0712342001", "2001"), ("0712341019", "1019")],
)
async def test_failure_callbacks_fail_the_ticket_and_release_seats(
    client: httpx.AsyncClient, phone: str, result_code: str
) -> None:
    movie = await create_movie(client, max_tickets=2)
    response = await buy(client, movie["movieId"], phone=phone, quantity=2)
    assert response.status_code == 200
    failed = await wait_for_status(client, response.json()["ticketId"], "Failed")
    assert failed["resultCode"] == result_code
    assert failed["mpesaReceiptNumber"] is None
    # The two seats are free again.
    assert (await buy(client, movie["movieId"], phone="0712349003", quantity=2)).status_code == 200


@pytest.mark.parametrize(
    ("phone", "status", "code"),
    [
        ("0712349500", 502, "payment_provider_error"),
        ("0712349400", 502, "payment_provider_error"),
        ("0712349503", 503, "payment_provider_busy"),
    ],
)
async def test_refused_push_fails_the_ticket_and_names_it(
    client: httpx.AsyncClient, phone: str, status: int, code: str
) -> None:
    movie = await create_movie(client, max_tickets=1)
    response = await buy(client, movie["movieId"], phone=phone)
    assert response.status_code == status
    error = response.json()
    assert error["code"] == code
    failed = await ticket(client, error["ticketId"])
    assert failed["paymentStatus"] == "Failed"
    assert failed["resultCode"] is None
    if status == 503:
        assert response.headers["retry-after"] == "60"
    # The seat was released.
    assert (await buy(client, movie["movieId"], phone="0712349003")).status_code == 200


async def test_lost_callback_is_settled_by_query(client: httpx.AsyncClient) -> None:
    movie = await create_movie(client)
    body = (await buy(client, movie["movieId"], phone="0712349003")).json()
    query = {"checkoutRequestId": body["checkoutRequestId"]}
    status = await _query_until_final(client, query)
    assert status["ResultCode"] == "0"
    assert status["paymentStatus"] == "Paid"
    assert (await ticket(client, body["ticketId"]))["paymentStatus"] == "Paid"


async def test_unreachable_phone_is_failed_by_query(client: httpx.AsyncClient) -> None:
    movie = await create_movie(client)
    body = (await buy(client, movie["movieId"], phone="0712341037")).json()
    status = await _query_until_final(client, {"checkoutRequestId": body["checkoutRequestId"]})
    assert status["ResultCode"] == "1037"
    assert status["paymentStatus"] == "Failed"


async def _query_until_final(client: httpx.AsyncClient, query: dict[str, str]) -> dict[str, Any]:
    for _ in range(200):
        response = await client.post("/api/query-payment-status", json=query)
        assert response.status_code == 200, response.text
        status: dict[str, Any] = response.json()
        if status["ResultCode"] is not None:
            return status
        assert status["paymentStatus"] == "Pending"
        assert status["ResultDesc"] is None
    raise AssertionError("no final answer")


async def test_callback_that_overtakes_the_push_answer_is_applied(
    client: httpx.AsyncClient,
) -> None:
    movie = await create_movie(client)
    response = await buy(client, movie["movieId"], phone="0712349002")
    assert response.status_code == 200
    assert response.json()["paymentStatus"] == "Paid"
    assert (await ticket(client, response.json()["ticketId"]))["paymentStatus"] == "Paid"


async def test_query_unknown_checkout_id_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/query-payment-status", json={"checkoutRequestId": "ws_x"})
    assert response.status_code == 404


async def test_sold_out_says_how_many_seats_are_left(client: httpx.AsyncClient) -> None:
    movie = await create_movie(client, max_tickets=3)
    assert (await buy(client, movie["movieId"], phone="0712349003", quantity=2)).status_code == 200
    response = await buy(client, movie["movieId"], phone="0712349003", quantity=2)
    assert response.status_code == 409
    assert response.json()["code"] == "sold_out"
    assert response.json()["seatsAvailable"] == 1


INVALID_ORDERS: list[tuple[str, dict[str, Any], int, str]] = [
    ("phone not Kenyan", {"phoneNumber": "+1 415 555 0100"}, 422, "body.phoneNumber"),
    ("phone landline", {"phoneNumber": "0202345678"}, 422, "body.phoneNumber"),
    ("phone letters", {"phoneNumber": "07123abc78"}, 422, "body.phoneNumber"),
    ("phone number type", {"phoneNumber": 712345678}, 422, "body.phoneNumber"),
    ("quantity zero", {"quantity": 0}, 422, "body.quantity"),
    ("quantity over order max", {"quantity": 11}, 422, "body.quantity"),
    ("quantity fraction", {"quantity": 1.5}, 422, "body.quantity"),
    ("quantity string", {"quantity": "2"}, 422, "body.quantity"),
    ("name blank", {"customerName": "  "}, 422, "body.customerName"),
    ("name too long", {"customerName": "x" * 256}, 422, "body.customerName"),
    ("movie id string", {"movieId": "1"}, 422, "body.movieId"),
    ("movie id negative", {"movieId": -1}, 422, "body.movieId"),
]


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [(c, s, f) for _, c, s, f in INVALID_ORDERS],
    ids=[name for name, *_ in INVALID_ORDERS],
)
async def test_invalid_orders_are_refused_and_nothing_is_stored(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    change: dict[str, Any],
    status: int,
    field: str,
) -> None:
    movie = await create_movie(client)
    order = {"movieId": movie["movieId"], "customerName": "Jane", "phoneNumber": "0712345678"}
    response = await client.post("/api/make-payment", json={**order, "quantity": 1, **change})
    assert response.status_code == status, response.text
    body = response.json()
    assert field in [detail["field"] for detail in body["details"]]
    # One wording, whether the schema or the service refused the order.
    assert body["error"].startswith(f"Invalid request: {field}: ")
    assert await count_tickets(sessionmaker) == 0


async def test_unknown_movie_started_showing_and_total_over_limit(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    assert (await buy(client, 424242)).status_code == 404
    started = await create_movie(client, showTime=PAST)
    response = await buy(client, started["movieId"])
    assert response.status_code == 409
    assert "started" in response.json()["error"]
    pricey = await create_movie(client, price=250_000)
    response = await buy(client, pricey["movieId"], quantity=2)
    assert response.status_code == 422
    over_limit = "the total 500000 is over M-Pesa's limit of 250000"
    assert response.json() == {
        "error": f"Invalid request: body.quantity: {over_limit}",
        "code": "validation_error",
        "details": [{"field": "body.quantity", "message": over_limit}],
    }
    assert await count_tickets(sessionmaker) == 0


@pytest.mark.parametrize(
    "phone", ["0712345678", "0112345678", "+254712345678", "254112345678", "712345678"]
)
async def test_every_phone_form_is_normalised(client: httpx.AsyncClient, phone: str) -> None:
    movie = await create_movie(client)
    response = await buy(client, movie["movieId"], phone=phone)
    assert response.status_code == 200, response.text
    stored = await ticket(client, response.json()["ticketId"])
    assert stored["phoneNumber"] == "254" + phone.removeprefix("+").removeprefix("254")[-9:]


async def test_unknown_ticket_is_404(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/tickets/99999")).status_code == 404
    assert (await client.get("/api/tickets/abc")).status_code == 422


class TestSeatHoarding:
    """One client address, or one phone number, holds only so many unpaid seats of a showing."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(
            update={
                "max_held_seats_per_phone": 10,
                "max_held_seats_per_address": 12,
                "trusted_proxies": [ip_network("10.0.0.0/8")],
            }
        )

    @staticmethod
    def client_at(app: FastAPI, address: str, **headers: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40123))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver", headers=headers)

    async def test_made_up_numbers_from_one_address_cannot_hold_a_showing(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        premiere = await create_movie(client, max_tickets=100)
        # 9003: the prompt is accepted and no callback comes, so every hold stays unpaid.
        async with self.client_at(app, "203.0.113.7") as hoarder:
            responses = await asyncio.gather(
                *(buy(hoarder, premiere["movieId"], phone=f"07{n:04d}9003") for n in range(40))
            )
        statuses = Counter(response.status_code for response in responses)
        assert statuses == Counter({200: 12, 409: 28})
        refused = next(response.json() for response in responses if response.status_code == 409)
        assert refused["code"] == "too_many_seats_held"
        assert "may hold at most 12 at once" in refused["error"]
        async with sessionmaker() as session:
            addresses = (await session.scalars(select(Ticket.client_address))).all()
        assert addresses == ["203.0.113.7"] * 12
        # Anyone else still buys.
        async with self.client_at(app, "198.51.100.1") as buyer:
            assert (await buy(buyer, premiere["movieId"], phone="0712349003")).status_code == 200

    async def test_one_phone_number_from_many_addresses_cannot_either(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        premiere = await create_movie(client, max_tickets=100)

        async def from_somewhere(n: int) -> httpx.Response:
            async with self.client_at(app, f"198.51.100.{n}") as somewhere:
                return await buy(somewhere, premiere["movieId"], phone="0712349003", quantity=2)

        responses = await asyncio.gather(*(from_somewhere(n) for n in range(30)))
        statuses = Counter(response.status_code for response in responses)
        assert statuses == Counter({200: 5, 409: 25})
        assert "This phone number already holds" in responses_409(responses)[0]["error"]

    async def test_an_ipv6_client_is_its_64_and_behind_a_proxy_the_forwarded_client(
        self, app: FastAPI, client: httpx.AsyncClient
    ) -> None:
        premiere = await create_movie(client, max_tickets=100)

        async def buy_from(address: str, n: int, **headers: str) -> int:
            async with self.client_at(app, address, **headers) as someone:
                response = await buy(
                    someone, premiere["movieId"], phone=f"07{n:04d}9003", quantity=6
                )
                return response.status_code

        # Two addresses of one /64 are one client; another /64 is another.
        assert await buy_from("2001:db8:1:2::a", 1) == 200
        assert await buy_from("2001:db8:1:2:ffff::b", 2) == 200
        assert await buy_from("2001:db8:1:2::c", 3) == 409
        assert await buy_from("2001:db8:1:3::a", 4) == 200
        # Through our proxy (10.0.0.0/8): each forwarded client counts, not the proxy.
        for n in range(5):
            forwarded = {"X-Forwarded-For": f"192.0.2.{n}"}
            assert await buy_from("10.0.0.5", 10 + n, **forwarded) == 200


def responses_409(responses: list[httpx.Response]) -> list[dict[str, Any]]:
    return [response.json() for response in responses if response.status_code == 409]
