"""Daraja callbacks: every body shape, duplicates, contradictions, amounts, forgeries."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets.db.models import CallbackLog, CallbackOutcome, Movie
from movietickets.settings import Settings
from tests.helpers import buy, callback_body, create_movie, ticket

ACK = {"ResultCode": 0, "ResultDesc": "Accepted"}


async def pending_purchase(client: httpx.AsyncClient, quantity: int = 1) -> tuple[int, str]:
    """A Pending ticket whose push the simulator accepts without ever calling back."""
    movie = await create_movie(client, price=500, max_tickets=10)
    body = (await buy(client, movie["movieId"], phone="0712349003", quantity=quantity)).json()
    return body["ticketId"], body["checkoutRequestId"]


async def post_callback(
    client: httpx.AsyncClient, body: Any, path: str = "/api/mpesa-callback"
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post(path, content=content, headers={"content-type": "application/json"})


async def callback_log(sessionmaker: async_sessionmaker[AsyncSession]) -> list[CallbackLog]:
    async with sessionmaker() as session:
        rows = await session.scalars(select(CallbackLog).order_by(CallbackLog.callback_id))
        return list(rows.all())


async def seats_paid(sessionmaker: async_sessionmaker[AsyncSession], movie_id: int) -> int:
    async with sessionmaker() as session:
        movie = await session.get(Movie, movie_id)
        assert movie is not None
        return movie.seats_paid


@pytest.mark.parametrize("path", ["/api/mpesa-callback", "/api/payment-callback"])
async def test_success_marks_paid_with_receipt_and_kenyan_time(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], path: str
) -> None:
    ticket_id, checkout_id = await pending_purchase(client, quantity=2)
    response = await post_callback(client, callback_body(checkout_id, amount=1000.00), path)
    assert response.status_code == 200
    assert response.json() == ACK
    paid = await ticket(client, ticket_id)
    assert paid["paymentStatus"] == "Paid"
    assert paid["mpesaReceiptNumber"] == "NLJ7RT61SV"
    # 2025-12-19 10:21:15 in Nairobi is 07:21:15 UTC.
    assert paid["transactionDate"] == "2025-12-19T07:21:15.000Z"
    assert await seats_paid(sessionmaker, paid["movieId"]) == 2
    [entry] = await callback_log(sessionmaker)
    assert entry.outcome == "applied"
    assert json.loads(entry.body) == callback_body(checkout_id, amount=1000.00)


@pytest.mark.parametrize("transaction_date", ["00010101000000", 99991231235959, 19991231235959])
async def test_a_transaction_date_out_of_range_is_dropped_not_the_payment(
    client: httpx.AsyncClient, transaction_date: int | str
) -> None:
    ticket_id, checkout_id = await pending_purchase(client)
    body = callback_body(checkout_id)
    items = body["Body"]["stkCallback"]["CallbackMetadata"]["Item"]
    for item in items:
        if item["Name"] == "TransactionDate":
            item["Value"] = transaction_date
    response = await post_callback(client, body)
    assert response.status_code == 200, response.text
    paid = await ticket(client, ticket_id)
    assert paid["paymentStatus"] == "Paid"
    assert paid["transactionDate"] is None


@pytest.mark.parametrize("result_code", [0, "0"])
async def test_result_code_as_number_or_string(
    client: httpx.AsyncClient, result_code: int | str
) -> None:
    ticket_id, checkout_id = await pending_purchase(client)
    await post_callback(client, callback_body(checkout_id, result_code, amount="500.00"))
    assert (await ticket(client, ticket_id))["paymentStatus"] == "Paid"


@pytest.mark.parametrize("result_code", [1032, "1032", 1, 2001, 1037, 17])
async def test_failure_without_metadata_fails_the_ticket(
    client: httpx.AsyncClient, result_code: int | str
) -> None:
    ticket_id, checkout_id = await pending_purchase(client)
    response = await post_callback(client, callback_body(checkout_id, result_code, metadata=False))
    assert response.json() == ACK
    failed = await ticket(client, ticket_id)
    assert failed["paymentStatus"] == "Failed"
    assert failed["resultCode"] == str(result_code)
    assert failed["resultDesc"] == "Request cancelled by user"


async def test_wrong_amount_is_never_paid(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ticket_id, checkout_id = await pending_purchase(client)
    await post_callback(client, callback_body(checkout_id, amount=1.0))
    current = await ticket(client, ticket_id)
    assert current["paymentStatus"] == "Failed"
    assert current["needsRefund"] is True
    assert current["mpesaReceiptNumber"] == "NLJ7RT61SV"
    assert "mismatch" in current["resultDesc"]
    assert await seats_paid(sessionmaker, current["movieId"]) == 0
    assert [e.outcome for e in await callback_log(sessionmaker)] == ["amount_mismatch"]


async def test_success_without_amount_is_left_for_a_query(client: httpx.AsyncClient) -> None:
    ticket_id, checkout_id = await pending_purchase(client)
    response = await post_callback(client, callback_body(checkout_id, amount=None))
    assert response.json() == ACK
    assert (await ticket(client, ticket_id))["paymentStatus"] == "Pending"
    response = await post_callback(client, callback_body(checkout_id, metadata=False))
    assert (await ticket(client, ticket_id))["paymentStatus"] == "Pending"


async def test_duplicates_change_nothing(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ticket_id, checkout_id = await pending_purchase(client)
    for receipt in ("FIRST00001", "SECOND0002", "THIRD00003"):
        response = await post_callback(client, callback_body(checkout_id, receipt=receipt))
        assert response.json() == ACK
    paid = await ticket(client, ticket_id)
    assert paid["mpesaReceiptNumber"] == "FIRST00001"
    assert await seats_paid(sessionmaker, paid["movieId"]) == 1
    outcomes = [entry.outcome for entry in await callback_log(sessionmaker)]
    assert outcomes == ["applied", "ignored", "ignored"]


@pytest.mark.parametrize(("first", "second"), [(0, 1032), (1032, 0)])
async def test_contradicting_callbacks_change_nothing(
    client: httpx.AsyncClient, first: int, second: int
) -> None:
    ticket_id, checkout_id = await pending_purchase(client)
    await post_callback(client, callback_body(checkout_id, first, metadata=first == 0))
    settled = await ticket(client, ticket_id)
    response = await post_callback(client, callback_body(checkout_id, second, metadata=second == 0))
    assert response.json() == ACK
    after = await ticket(client, ticket_id)
    assert after["paymentStatus"] == settled["paymentStatus"]
    assert after["resultCode"] == str(first)


async def test_unknown_checkout_id_is_acknowledged_and_kept(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    response = await post_callback(client, callback_body("ws_CO_unknown", 1032, metadata=False))
    assert response.json() == ACK
    [entry] = await callback_log(sessionmaker)
    assert entry.outcome == "unmatched"
    assert entry.checkout_request_id == "ws_CO_unknown"


MALFORMED: list[tuple[str, bytes]] = [
    ("not json", b"{nope"),
    ("empty", b""),
    ("array", b"[]"),
    ("no Body", b'{"stkCallback": {}}'),
    ("no stkCallback", b'{"Body": {}}'),
    ("no CheckoutRequestID", b'{"Body": {"stkCallback": {"ResultCode": 0}}}'),
    ("no ResultCode", b'{"Body": {"stkCallback": {"CheckoutRequestID": "ws_CO_1"}}}'),
    (
        "ResultCode null",
        b'{"Body": {"stkCallback": {"CheckoutRequestID": "x", "ResultCode": null}}}',
    ),
    (
        "items not a list",
        b'{"Body": {"stkCallback": {"CheckoutRequestID": "x", "ResultCode": 0,'
        b' "CallbackMetadata": {"Item": 5}}}}',
    ),
]


@pytest.mark.parametrize("body", [b for _, b in MALFORMED], ids=[n for n, _ in MALFORMED])
async def test_malformed_bodies_get_400_are_stored_and_change_nothing(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], body: bytes
) -> None:
    ticket_id, _ = await pending_purchase(client)
    response = await post_callback(client, body)
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_callback"
    assert (await ticket(client, ticket_id))["paymentStatus"] == "Pending"
    [entry] = await callback_log(sessionmaker)
    assert entry.outcome == "malformed"
    assert entry.body == body.decode()


async def test_concurrent_duplicates_make_one_transition(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    ticket_id, checkout_id = await pending_purchase(client)
    bodies = [callback_body(checkout_id, receipt=f"RCPT{n:06d}") for n in range(25)]
    bodies += [callback_body(checkout_id, 1032, metadata=False) for _ in range(25)]
    responses = await asyncio.gather(*(post_callback(client, body) for body in bodies))
    assert all(response.json() == ACK for response in responses)
    outcomes = [entry.outcome for entry in await callback_log(sessionmaker)]
    assert outcomes.count(CallbackOutcome.APPLIED) == 1
    assert outcomes.count(CallbackOutcome.IGNORED) == 49
    final = await ticket(client, ticket_id)
    assert await seats_paid(sessionmaker, final["movieId"]) == (
        1 if final["paymentStatus"] == "Paid" else 0
    )


class TestCallbackToken:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"mpesa_callback_token": SecretStr("s3cret-token")})

    @pytest.fixture
    async def purchase(self, client: httpx.AsyncClient) -> tuple[int, str]:
        return await pending_purchase(client)

    @pytest.mark.parametrize("query", ["", "?token=wrong", "?token=", "?token=s3cret-token2"])
    async def test_missing_or_wrong_token_is_refused(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        purchase: tuple[int, str],
        query: str,
    ) -> None:
        ticket_id, checkout_id = purchase
        response = await post_callback(
            client, callback_body(checkout_id), f"/api/payment-callback{query}"
        )
        assert response.status_code == 403
        assert (await ticket(client, ticket_id))["paymentStatus"] == "Pending"
        assert [entry.outcome for entry in await callback_log(sessionmaker)] == ["refused"]

    async def test_right_token_is_applied(
        self, client: httpx.AsyncClient, purchase: tuple[int, str]
    ) -> None:
        ticket_id, checkout_id = purchase
        response = await post_callback(
            client, callback_body(checkout_id), "/api/payment-callback?token=s3cret-token"
        )
        assert response.json() == ACK
        assert (await ticket(client, ticket_id))["paymentStatus"] == "Paid"

    async def test_the_simulator_calls_back_with_the_token(self, client: httpx.AsyncClient) -> None:
        movie = await create_movie(client)
        body = (await buy(client, movie["movieId"])).json()
        for _ in range(200):
            if (await ticket(client, body["ticketId"]))["paymentStatus"] == "Paid":
                return
            await asyncio.sleep(0.02)
        raise AssertionError("never paid")


# Amounts no M-Pesa payment can have (the most is 250,000 shillings), as numbers or text.
IMPOSSIBLE_AMOUNTS = ["100000000000000000000", "1e5000", -500, "-1e30"]


@pytest.mark.parametrize("amount", IMPOSSIBLE_AMOUNTS)
async def test_an_impossible_amount_is_a_mismatch_never_a_500(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], amount: Any
) -> None:
    ticket_id, checkout_id = await pending_purchase(client)
    response = await post_callback(client, callback_body(checkout_id, amount=amount))
    assert response.json() == ACK
    current = await ticket(client, ticket_id)
    assert (current["paymentStatus"], current["needsRefund"]) == ("Failed", True)
    assert [e.outcome for e in await callback_log(sessionmaker)] == ["amount_mismatch"]


@pytest.mark.parametrize("amount", IMPOSSIBLE_AMOUNTS)
async def test_an_impossible_amount_matches_no_unanswered_push(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], amount: Any
) -> None:
    ticket_id, _ = await pending_purchase(client)
    body = callback_body("ws_CO_unknown", amount=amount, phone=254712349003)
    response = await post_callback(client, body)
    assert response.json() == ACK
    assert (await ticket(client, ticket_id))["paymentStatus"] == "Pending"
    assert [e.outcome for e in await callback_log(sessionmaker)] == ["unmatched"]
