"""Daraja callbacks: every body shape, duplicates, contradictions, amounts, forgeries."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets.db.models import (
    CallbackLog,
    CallbackOutcome,
    Movie,
    PaymentStatus,
    PushRequest,
    Ticket,
)
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


# Values that only resemble a code: `false == 0` and `0.0 == 0` in Python, `" 0".strip()`,
# an Arabic-Indic zero (`str.isdigit()` is true).
NOT_A_RESULT_CODE = [False, True, 0.0, 1032.0, " 0", "0 ", "", "\u0660", {"code": 0}, [0]]


@pytest.mark.parametrize("result_code", NOT_A_RESULT_CODE, ids=repr)
async def test_a_result_code_that_only_resembles_one_is_malformed(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], result_code: Any
) -> None:
    ticket_id, checkout_id = await pending_purchase(client)
    response = await post_callback(client, callback_body(checkout_id, result_code))
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_callback"
    assert (await ticket(client, ticket_id))["paymentStatus"] == "Pending"
    assert [entry.outcome for entry in await callback_log(sessionmaker)] == ["malformed"]


async def test_only_the_integer_or_the_string_zero_is_success(client: httpx.AsyncClient) -> None:
    ticket_id, checkout_id = await pending_purchase(client)
    response = await post_callback(client, callback_body(checkout_id, "00"))
    assert response.json() == ACK
    current = await ticket(client, ticket_id)
    assert (current["paymentStatus"], current["resultCode"]) == ("Failed", "00")


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
    assert entry.body == body


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


# Bodies of any size (within MAX_BODY_BYTES) and any encoding: stored as received, answered 200
# or 400, never 500, on both databases. Each builds its body from the CheckoutRequestID.
KB64 = 64 * 1024


def sized(body: dict[str, Any], size: int) -> bytes:
    """`body` with its ResultDesc padded with 4-byte characters to exactly `size` bytes."""
    body["Body"]["stkCallback"]["ResultDesc"] = ""
    room = size - len(json.dumps(body, ensure_ascii=False).encode())
    body["Body"]["stkCallback"]["ResultDesc"] = (
        "😀" * (room // 4) + "ũ" * (room % 4 // 2) + ("a" * (room % 2))
    )
    raw = json.dumps(body, ensure_ascii=False).encode()
    assert len(raw) == size
    return raw


def with_stk(checkout_id: str, result_code: int = 0, **fields: Any) -> bytes:
    body = callback_body(checkout_id, result_code, metadata=result_code == 0)
    body["Body"]["stkCallback"].update(fields)
    return json.dumps(body, ensure_ascii=False).encode()


def with_amount(checkout_id: str, amount_json: str) -> bytes:
    marker = 123456789
    return (
        json.dumps(callback_body(checkout_id, amount=marker))
        .replace(str(marker), amount_json)
        .encode()
    )


# name: (body, status, ticket status afterwards)
BODIES: dict[str, tuple[Callable[[str], bytes], int, str]] = {
    "64 KiB success, 4-byte characters": (
        lambda c: sized(callback_body(c), KB64),
        200,
        "Paid",
    ),
    "64 KiB failure, 4-byte characters": (
        lambda c: sized(callback_body(c, 1032, metadata=False), KB64),
        200,
        "Failed",
    ),
    "64 KiB of 4-byte characters, not JSON": (
        lambda c: "😀".encode() * (KB64 // 4),
        400,
        "Pending",
    ),
    "64 KiB of invalid UTF-8": (lambda c: b"\xff" * KB64, 400, "Pending"),
    "invalid UTF-8 in a callback": (
        lambda c: with_stk(c).replace(b"processed successfully", b"processed \xc3\x28"),
        400,
        "Pending",
    ),
    "ResultDesc of 10,000 characters": (
        lambda c: with_stk(c, 1032, ResultDesc="ũ😀" * 5000),
        200,
        "Failed",
    ),
    "CheckoutRequestID longer than its column": (
        lambda c: with_stk(c, CheckoutRequestID=c + "😀" * 64),
        400,
        "Pending",
    ),
    "receipt of 1,000 characters": (
        lambda c: json.dumps(callback_body(c, receipt="R😀" * 500)).encode(),
        200,
        "Paid",
    ),
    "Amount of 4,000 digits": (lambda c: with_amount(c, "9" * 4000), 200, "Failed"),
    "Amount of 10,000 digits in a string": (
        lambda c: with_amount(c, '"' + "9" * 10_000 + '"'),
        200,
        "Failed",
    ),
    "Amount of 5,000 digits (beyond any JSON reader)": (
        lambda c: with_amount(c, "9" * 5000),
        400,
        "Pending",
    ),
}


def assert_stored_as_received(entry: CallbackLog, raw: bytes) -> None:
    assert entry.body == raw
    assert entry.body_size == len(raw)
    assert entry.body_sha256 == hashlib.sha256(raw).hexdigest()


@pytest.mark.parametrize(("make_body", "status", "ticket_status"), BODIES.values(), ids=BODIES)
async def test_any_body_is_stored_as_received_and_never_a_500(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    make_body: Callable[[str], bytes],
    status: int,
    ticket_status: str,
) -> None:
    assert settings.max_body_bytes == KB64  # the default, which these bodies reach
    ticket_id, checkout_id = await pending_purchase(client)
    raw = make_body(checkout_id)
    response = await post_callback(client, raw)
    assert response.status_code == status, response.text
    current = await ticket(client, ticket_id)
    assert current["paymentStatus"] == ticket_status
    if current["resultDesc"] is not None:
        assert len(current["resultDesc"]) <= 255
    if current["mpesaReceiptNumber"] is not None:
        assert len(current["mpesaReceiptNumber"]) <= 32
    [entry] = await callback_log(sessionmaker)
    assert_stored_as_received(entry, raw)
    assert entry.outcome == ("malformed" if status == 400 else entry.outcome)


async def test_a_long_result_desc_is_kept_cut_to_its_column(client: httpx.AsyncClient) -> None:
    ticket_id, checkout_id = await pending_purchase(client)
    await post_callback(client, with_stk(checkout_id, 1032, ResultDesc="ũ😀" * 5000))
    assert (await ticket(client, ticket_id))["resultDesc"] == "ũ😀" * 127 + "ũ"


async def test_a_huge_amount_is_shown_short(client: httpx.AsyncClient) -> None:
    ticket_id, checkout_id = await pending_purchase(client)
    await post_callback(client, with_amount(checkout_id, "9" * 4000))
    current = await ticket(client, ticket_id)
    assert current["resultDesc"] == "Amount mismatch: paid 1.000000e+4000, due 500"


async def test_a_long_merchant_request_id_does_not_cost_the_payment(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """A success for a push whose answer never came is matched by phone and amount; its
    MerchantRequestID, only informative, is cut to its column."""
    now = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        movie = Movie(title="T", show_time=now + timedelta(days=1), price=500, max_tickets=5)
        session.add(movie)
        await session.flush()
        unanswered = Ticket(
            movie_id=movie.movie_id,
            customer_name="Jane",
            phone_number="254712349003",
            quantity=1,
            total_amount=500,
            payment_status=PaymentStatus.PENDING,
            hold_expires_at=now + timedelta(minutes=10),
        )
        session.add(unanswered)
    raw = with_stk("ws_CO_never_answered", MerchantRequestID="m" * 5000)
    raw = raw.replace(b"254712344149", b"254712349003")
    response = await post_callback(client, raw)
    assert response.json() == ACK
    assert (await ticket(client, unanswered.ticket_id))["paymentStatus"] == "Paid"
    async with sessionmaker() as session:
        push = (await session.scalars(select(PushRequest))).one()
    assert push.merchant_request_id == "m" * 64
    [entry] = await callback_log(sessionmaker)
    assert_stored_as_received(entry, raw)


class TestTheLargestBodyAllowed:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"max_body_bytes": 1024 * 1024})

    async def test_is_stored_whole(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        _, checkout_id = await pending_purchase(client)
        for raw in (b"\xff" * 1024 * 1024, sized(callback_body(checkout_id), 1024 * 1024)):
            response = await post_callback(client, raw)
            assert response.status_code in (200, 400), response.text
            assert_stored_as_received((await callback_log(sessionmaker))[-1], raw)
