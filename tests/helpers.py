"""Small helpers shared by the API tests."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

FUTURE = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def create_movie(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"title": "Test showing", "showTime": FUTURE, "price": 500, "max_tickets": 100}
    response = await client.post("/api/movies", json={**body, **fields})
    assert response.status_code == 201, response.text
    movie: dict[str, Any] = response.json()["movie"]
    return movie


async def buy(
    client: httpx.AsyncClient, movie_id: int, phone: str = "0712344149", quantity: int = 1
) -> httpx.Response:
    return await client.post(
        "/api/make-payment",
        json={
            "movieId": movie_id,
            "customerName": "Jane Wanjiru",
            "phoneNumber": phone,
            "quantity": quantity,
        },
    )


async def ticket(client: httpx.AsyncClient, ticket_id: int) -> dict[str, Any]:
    response = await client.get(f"/api/tickets/{ticket_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()["ticket"]
    return body


async def wait_for_status(
    client: httpx.AsyncClient, ticket_id: int, status: str, seconds: float = 10.0
) -> dict[str, Any]:
    async with asyncio.timeout(seconds):
        while True:
            current = await ticket(client, ticket_id)
            if current["paymentStatus"] == status:
                return current
            await asyncio.sleep(0.02)


def callback_body(
    checkout_request_id: str,
    result_code: int | str = 0,
    *,
    amount: Any = 500.0,
    receipt: str = "NLJ7RT61SV",
    metadata: bool = True,
    phone: int = 254712344149,
) -> dict[str, Any]:
    stk: dict[str, Any] = {
        "MerchantRequestID": "29115-34620561-1",
        "CheckoutRequestID": checkout_request_id,
        "ResultCode": result_code,
        "ResultDesc": "The service request is processed successfully."
        if str(result_code) == "0"
        else "Request cancelled by user",
    }
    if metadata:
        items: list[dict[str, Any]] = [
            {"Name": "MpesaReceiptNumber", "Value": receipt},
            {"Name": "Balance"},
            {"Name": "TransactionDate", "Value": 20251219102115},
            {"Name": "PhoneNumber", "Value": phone},
        ]
        if amount is not None:
            items.insert(0, {"Name": "Amount", "Value": amount})
        stk["CallbackMetadata"] = {"Item": items}
    return {"Body": {"stkCallback": stk}}
