"""DarajaClient against Daraja mocked at the httpx transport with respx."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from movietickets.daraja import wire
from movietickets.daraja.client import DarajaClient, DarajaConfig, StkPushAccepted, StkQueryResult
from movietickets.daraja.errors import (
    DarajaAuthError,
    DarajaBusy,
    DarajaError,
    DarajaRejected,
    DarajaStillProcessing,
    DarajaTimeout,
    DarajaUnavailable,
    error_from_response,
)

BASE_URL = "https://daraja.test"
SHORTCODE = wire.SANDBOX_SHORTCODE
PASSKEY = wire.SANDBOX_PASSKEY
PHONE = "254708374149"
CALLBACK = "https://tickets.example/payments/callback/s3cret"
CONFIG = DarajaConfig(
    base_url=BASE_URL,
    consumer_key="the-key",
    consumer_secret="the-consumer-secret",
    shortcode=SHORTCODE,
    passkey=PASSKEY,
)
# 06:15:26 UTC is 09:15:26 in Nairobi.
FIXED_NOW = datetime(2024, 7, 10, 6, 15, 26, tzinfo=UTC)
TIMESTAMP = "20240710091526"
CHECKOUT_ID = "ws_CO_1007202409152617172396192"
ACCEPTED = {
    "MerchantRequestID": "2654-4b64-97ff-b827b542881d3130",
    "CheckoutRequestID": CHECKOUT_ID,
    "ResponseCode": "0",
    "ResponseDescription": "Success. Request accepted for processing",
    "CustomerMessage": "Success. Request accepted for processing",
}
QUERY_DONE: dict[str, object] = {
    "ResponseCode": "0",
    "ResponseDescription": "The service request has been accepted successsfully",
    "MerchantRequestID": "22205-34066-1",
    "CheckoutRequestID": CHECKOUT_ID,
    "ResultCode": "0",
    "ResultDesc": "The service request is processed successfully.",
}
STILL_PROCESSING = {
    "requestId": "req-9",
    "errorCode": "500.001.1001",
    "errorMessage": "The transaction is being processed",
}


def token_body(issued: str = "token-1", expires_in: object = "3599") -> dict[str, object]:
    return {"access_token": issued, "expires_in": expires_in}


def error_body(code: str, message: str = "boom") -> dict[str, str]:
    return {"requestId": "req-1", "errorCode": code, "errorMessage": message}


class Clock:
    """A settable clock; `step` makes every reading advance."""

    def __init__(self, now: datetime = FIXED_NOW, step: timedelta = timedelta(0)) -> None:
        self.now = now
        self.step = step

    def __call__(self) -> datetime:
        now = self.now
        self.now += self.step
        return now


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


@pytest.fixture
def daraja() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE_URL, assert_all_called=False) as router:
        router.get(wire.OAUTH_PATH, name="oauth").respond(json=token_body())
        router.post(wire.STK_PUSH_PATH, name="push").respond(json=ACCEPTED)
        router.post(wire.STK_QUERY_PATH, name="query").respond(json=QUERY_DONE)
        yield router


def make_client(http: httpx.AsyncClient, clock: Clock | None = None, **config: Any) -> DarajaClient:
    return DarajaClient(http, dataclasses.replace(CONFIG, **config), clock=clock or Clock())


async def push(client: DarajaClient, **overrides: Any) -> StkPushAccepted:
    arguments: dict[str, Any] = {
        "phone_number": PHONE,
        "amount": 500,
        "account_reference": "ORD42",
        "transaction_desc": "Movie tickets",
        "callback_url": CALLBACK,
    }
    return await client.stk_push(**(arguments | overrides))


def sent_json(route: respx.Route, index: int = -1) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls[index].request.content)
    return body


def bearer(route: respx.Route, index: int = -1) -> str:
    return str(route.calls[index].request.headers["Authorization"])


# --- request format -------------------------------------------------------------------------


async def test_push_sends_exact_oauth_and_push_requests(
    http: httpx.AsyncClient, daraja: respx.MockRouter
) -> None:
    accepted = await push(make_client(http))

    oauth = daraja["oauth"].calls.last.request
    assert oauth.method == "GET"
    assert oauth.url == f"{BASE_URL}/oauth/v1/generate?grant_type=client_credentials"
    assert oauth.headers["Authorization"] == "Basic dGhlLWtleTp0aGUtY29uc3VtZXItc2VjcmV0"
    assert (
        base64.b64decode("dGhlLWtleTp0aGUtY29uc3VtZXItc2VjcmV0") == b"the-key:the-consumer-secret"
    )

    request = daraja["push"].calls.last.request
    assert request.url == f"{BASE_URL}/mpesa/stkpush/v1/processrequest"
    assert request.headers["Authorization"] == "Bearer token-1"
    assert request.headers["Content-Type"] == "application/json"
    password = base64.b64encode(f"{SHORTCODE}{PASSKEY}{TIMESTAMP}".encode()).decode()
    body = sent_json(daraja["push"])
    assert body == {
        "BusinessShortCode": "174379",
        "Password": password,
        "Timestamp": "20240710091526",
        "TransactionType": "CustomerPayBillOnline",
        "Amount": 500,
        "PartyA": PHONE,
        "PartyB": "174379",
        "PhoneNumber": PHONE,
        "CallBackURL": CALLBACK,
        "AccountReference": "ORD42",
        "TransactionDesc": "Movie tickets",
    }
    assert type(body["Amount"]) is int
    assert accepted == StkPushAccepted(
        merchant_request_id="2654-4b64-97ff-b827b542881d3130",
        checkout_request_id=CHECKOUT_ID,
        response_code="0",
        response_description="Success. Request accepted for processing",
        customer_message="Success. Request accepted for processing",
    )
    assert not http.is_closed


async def test_timestamp_is_computed_once_per_request(
    http: httpx.AsyncClient, daraja: respx.MockRouter
) -> None:
    # Every clock reading is a second later, so a second reading would break the Password.
    client = make_client(http, Clock(step=timedelta(seconds=1)))
    await push(client)
    await client.stk_query(CHECKOUT_ID)

    for body in (sent_json(daraja["push"]), sent_json(daraja["query"])):
        assert (
            base64.b64decode(body["Password"]).decode() == SHORTCODE + PASSKEY + body["Timestamp"]
        )


async def test_till_mode_sends_buy_goods_and_till_number(
    http: httpx.AsyncClient, daraja: respx.MockRouter
) -> None:
    await push(make_client(http, transaction_type=wire.TILL, party_b="5566778"))

    body = sent_json(daraja["push"])
    assert body["TransactionType"] == "CustomerBuyGoodsOnline"
    assert body["PartyB"] == "5566778"
    assert body["BusinessShortCode"] == SHORTCODE


async def test_base_url_with_path_and_trailing_slash(http: httpx.AsyncClient) -> None:
    base = "http://127.0.0.1:8000/simulator/daraja"
    with respx.mock(base_url=base, assert_all_called=True) as router:
        router.get(wire.OAUTH_PATH).respond(json=token_body())
        router.post(wire.STK_PUSH_PATH).respond(json=ACCEPTED)
        await push(make_client(http, base_url=base + "/"))


def test_config_rejects_unknown_transaction_type_and_hides_secrets() -> None:
    with pytest.raises(ValueError, match="transaction_type"):
        dataclasses.replace(CONFIG, transaction_type="CustomerPayBill")
    assert "the-consumer-secret" not in repr(CONFIG)
    assert PASSKEY not in repr(CONFIG)


# --- the token ------------------------------------------------------------------------------


async def test_token_is_cached_across_calls(
    http: httpx.AsyncClient, daraja: respx.MockRouter
) -> None:
    client = make_client(http)
    for _ in range(3):
        await push(client)
    await client.stk_query(CHECKOUT_ID)

    assert daraja["oauth"].call_count == 1
    assert [call.request.headers["Authorization"] for call in daraja["push"].calls] == [
        "Bearer token-1"
    ] * 3
    assert bearer(daraja["query"]) == "Bearer token-1"
    assert await client.access_token() == "token-1"


@pytest.mark.parametrize("expires_in", ["3599", 3599, 3599.0, None, "soon", -5])
async def test_token_is_refreshed_margin_seconds_before_expiry(
    http: httpx.AsyncClient, daraja: respx.MockRouter, expires_in: object
) -> None:
    daraja["oauth"].side_effect = [
        httpx.Response(200, json=token_body("token-1", expires_in)),
        httpx.Response(200, json=token_body("token-2")),
    ]
    clock = Clock()
    client = make_client(http, clock)
    await push(client)

    # Anything unusable counts as the documented 3599 s; refresh 60 s (the margin) early.
    clock.now = FIXED_NOW + timedelta(seconds=3599 - 60 - 1)
    await push(client)
    assert daraja["oauth"].call_count == 1

    clock.now = FIXED_NOW + timedelta(seconds=3599 - 60)
    await push(client)
    assert daraja["oauth"].call_count == 2
    assert bearer(daraja["push"]) == "Bearer token-2"


async def test_concurrent_calls_share_one_token_request(
    http: httpx.AsyncClient, daraja: respx.MockRouter
) -> None:
    async def slow_token(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.02)  # keeps the refresh in flight while the others arrive
        return httpx.Response(200, json=token_body())

    daraja["oauth"].side_effect = slow_token
    client = make_client(http)
    results = await asyncio.gather(*(push(client) for _ in range(20)))

    assert len(results) == 20
    assert daraja["oauth"].call_count == 1
    assert daraja["push"].call_count == 20


@pytest.mark.parametrize(
    "refusal",
    [
        httpx.Response(404, json=error_body("404.001.03", "Invalid Access Token")),
        httpx.Response(401, json=error_body("401.003.01", "Error occurred: Access Token expired")),
        httpx.Response(401),
    ],
)
async def test_refused_token_is_refreshed_once_and_request_retried_once(
    http: httpx.AsyncClient, daraja: respx.MockRouter, refusal: httpx.Response
) -> None:
    daraja["oauth"].side_effect = [
        httpx.Response(200, json=token_body("token-1")),
        httpx.Response(200, json=token_body("token-2")),
    ]
    daraja["push"].side_effect = [refusal, httpx.Response(200, json=ACCEPTED)]

    accepted = await push(make_client(http))

    assert accepted.checkout_request_id == CHECKOUT_ID
    assert daraja["oauth"].call_count == 2
    assert daraja["push"].call_count == 2
    assert [bearer(daraja["push"], i) for i in (0, 1)] == ["Bearer token-1", "Bearer token-2"]
    assert sent_json(daraja["push"], 0) == sent_json(daraja["push"], 1)


async def test_concurrent_refusals_refresh_the_token_once(
    http: httpx.AsyncClient, daraja: respx.MockRouter
) -> None:
    tokens = iter(["token-1", "token-2", "token-3"])

    async def slow_token(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.02)
        return httpx.Response(200, json=token_body(next(tokens)))

    refusals = 0
    all_sent_with_first_token = asyncio.Event()

    async def stale_first_token(request: httpx.Request) -> httpx.Response:
        nonlocal refusals
        if request.headers["Authorization"] != "Bearer token-1":
            return httpx.Response(200, json=ACCEPTED)
        # No refusal is answered before all 20 are sent with token-1 (however slowly a busy
        # machine starts them); then they arrive spread out, most of them after token-2 is in
        # place, and must not throw token-2 away.
        refusals += 1
        if refusals == 20:
            all_sent_with_first_token.set()
        order = refusals
        await all_sent_with_first_token.wait()
        await asyncio.sleep(0.01 * order)
        return httpx.Response(404, json=error_body("404.001.03", "Invalid Access Token"))

    daraja["oauth"].side_effect = slow_token
    daraja["push"].side_effect = stale_first_token
    client = make_client(http)
    await asyncio.gather(*(push(client) for _ in range(20)))

    assert daraja["oauth"].call_count == 2
    assert daraja["push"].call_count == 40


async def test_token_refused_twice_raises_auth_error(
    http: httpx.AsyncClient, daraja: respx.MockRouter
) -> None:
    daraja["push"].respond(401)

    with pytest.raises(DarajaAuthError) as caught:
        await push(make_client(http))

    assert caught.value.http_status == 401
    assert daraja["oauth"].call_count == 2
    assert daraja["push"].call_count == 2


@pytest.mark.parametrize(
    ("response", "expected", "code"),
    [
        (httpx.Response(400), DarajaAuthError, None),
        (
            httpx.Response(400, json=error_body("400.008.01", "Invalid Authentication")),
            DarajaAuthError,
            "400.008.01",
        ),
        (
            httpx.Response(400, json=error_body("400.008.02", "Invalid grant type")),
            DarajaAuthError,
            "400.008.02",
        ),
        (httpx.Response(503, text="<html>Service Unavailable</html>"), DarajaUnavailable, None),
        (httpx.Response(200, text="<html>ok</html>"), DarajaUnavailable, None),
        (httpx.Response(200, json={"expires_in": "3599"}), DarajaUnavailable, None),
        (
            httpx.Response(500, json=error_body("500.003.02", "Spike arrest")),
            DarajaBusy,
            "500.003.02",
        ),
    ],
)
async def test_oauth_failures(
    http: httpx.AsyncClient,
    daraja: respx.MockRouter,
    response: httpx.Response,
    expected: type[DarajaError],
    code: str | None,
) -> None:
    daraja["oauth"].side_effect = [response]

    with pytest.raises(expected) as caught:
        await push(make_client(http))

    assert type(caught.value) is expected
    assert caught.value.error_code == code
    assert caught.value.http_status == response.status_code
    assert daraja["push"].call_count == 0


@pytest.mark.parametrize("failure", [httpx.ReadTimeout, httpx.ConnectError])
async def test_oauth_transport_failure_means_nothing_was_sent(
    http: httpx.AsyncClient, daraja: respx.MockRouter, failure: type[httpx.TransportError]
) -> None:
    daraja["oauth"].side_effect = failure

    with pytest.raises(DarajaUnavailable):
        await push(make_client(http))
    assert daraja["push"].call_count == 0


# --- push outcomes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("response", "expected", "code"),
    [
        (
            httpx.Response(400, json=error_body("400.002.02", "Bad Request - Invalid PhoneNumber")),
            DarajaRejected,
            "400.002.02",
        ),
        (
            httpx.Response(500, json=error_body("500.001.1001", "Merchant does not exist")),
            DarajaRejected,
            "500.001.1001",
        ),
        (
            httpx.Response(500, json=error_body("500.003.02", "System is busy")),
            DarajaBusy,
            "500.003.02",
        ),
        (
            httpx.Response(500, json=error_body("500.003.03", "Quota Violation")),
            DarajaBusy,
            "500.003.03",
        ),
        (
            httpx.Response(500, json=error_body("500.003.1001", "Internal Server Error")),
            DarajaRejected,
            "500.003.1001",
        ),
        (httpx.Response(429), DarajaBusy, None),
        (httpx.Response(404, text="Not Found"), DarajaRejected, None),
        (
            httpx.Response(
                503,
                text="<html><body>Service Unavailable</body></html>",
                headers={"Content-Type": "text/html"},
            ),
            DarajaUnavailable,
            None,
        ),
        (httpx.Response(502, json=["not", "an", "object"]), DarajaUnavailable, None),
        # An unreadable acceptance: the prompt may be on the phone, so the outcome is unknown.
        (httpx.Response(200, text="garbage{"), DarajaTimeout, None),
        (httpx.Response(200, json=["garbage"]), DarajaTimeout, None),
        (httpx.Response(200, json={"hello": "world"}), DarajaTimeout, None),
        (
            httpx.Response(200, json={**ACCEPTED, "CheckoutRequestID": None}),
            DarajaTimeout,
            None,
        ),
        (
            httpx.Response(
                200, json={**ACCEPTED, "ResponseCode": "1", "ResponseDescription": "Rejected"}
            ),
            DarajaRejected,
            "1",
        ),
    ],
)
async def test_push_error_mapping(
    http: httpx.AsyncClient,
    daraja: respx.MockRouter,
    response: httpx.Response,
    expected: type[DarajaError],
    code: str | None,
) -> None:
    daraja["push"].side_effect = [response]

    with pytest.raises(expected) as caught:
        await push(make_client(http))

    assert type(caught.value) is expected
    assert caught.value.error_code == code
    assert caught.value.http_status == response.status_code
    assert daraja["push"].call_count == 1


async def test_push_error_carries_daraja_fields(
    http: httpx.AsyncClient, daraja: respx.MockRouter
) -> None:
    daraja["push"].respond(400, json=error_body("400.002.02", "Bad Request - Invalid Amount"))

    with pytest.raises(DarajaRejected) as caught:
        await push(make_client(http))

    error = caught.value
    assert (error.message, error.error_code, error.http_status, error.request_id) == (
        "Bad Request - Invalid Amount",
        "400.002.02",
        400,
        "req-1",
    )
    assert str(error) == "Bad Request - Invalid Amount"


async def test_push_accepts_numeric_response_code(
    http: httpx.AsyncClient, daraja: respx.MockRouter
) -> None:
    daraja["push"].respond(json={**ACCEPTED, "ResponseCode": 0})

    assert (await push(make_client(http))).response_code == "0"


@pytest.mark.parametrize(
    ("headers", "retry_after"),
    [({}, 60.0), ({"Retry-After": "5"}, 5.0), ({"Retry-After": "soon"}, 60.0)],
)
async def test_busy_carries_retry_after(
    http: httpx.AsyncClient, daraja: respx.MockRouter, headers: dict[str, str], retry_after: float
) -> None:
    daraja["push"].respond(500, json=error_body("500.003.02", "Spike arrest"), headers=headers)

    with pytest.raises(DarajaBusy) as caught:
        await push(make_client(http))
    assert caught.value.retry_after == retry_after


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (httpx.ReadTimeout, DarajaTimeout),
        (httpx.WriteTimeout, DarajaTimeout),
        (httpx.RemoteProtocolError, DarajaTimeout),
        (httpx.ReadError, DarajaTimeout),
        (httpx.ConnectError, DarajaUnavailable),
        (httpx.ConnectTimeout, DarajaUnavailable),
        (httpx.PoolTimeout, DarajaUnavailable),
    ],
)
async def test_push_is_never_retried_after_a_transport_failure(
    http: httpx.AsyncClient,
    daraja: respx.MockRouter,
    failure: type[httpx.TransportError],
    expected: type[DarajaError],
) -> None:
    daraja["push"].side_effect = failure

    with pytest.raises(expected) as caught:
        await push(make_client(http))

    assert isinstance(caught.value.__cause__, failure)
    assert daraja["push"].call_count == 1


# --- query ----------------------------------------------------------------------------------


async def test_query_sends_exact_body_and_returns_result(
    http: httpx.AsyncClient, daraja: respx.MockRouter
) -> None:
    result = await make_client(http).stk_query(CHECKOUT_ID)

    request = daraja["query"].calls.last.request
    assert request.url == f"{BASE_URL}/mpesa/stkpushquery/v1/query"
    assert request.headers["Authorization"] == "Bearer token-1"
    assert request.headers["Content-Type"] == "application/json"
    assert sent_json(daraja["query"]) == {
        "BusinessShortCode": "174379",
        "Password": base64.b64encode(f"{SHORTCODE}{PASSKEY}{TIMESTAMP}".encode()).decode(),
        "Timestamp": TIMESTAMP,
        "CheckoutRequestID": CHECKOUT_ID,
    }
    assert result == StkQueryResult(
        response_code="0",
        response_description="The service request has been accepted successsfully",
        merchant_request_id="22205-34066-1",
        checkout_request_id=CHECKOUT_ID,
        result_code="0",
        result_desc="The service request is processed successfully.",
    )


async def test_query_normalises_numeric_result_code(
    http: httpx.AsyncClient, daraja: respx.MockRouter
) -> None:
    body = {**QUERY_DONE, "ResultCode": 1032, "ResultDesc": "Request cancelled by user"}
    daraja["query"].respond(json=body)

    result = await make_client(http).stk_query(CHECKOUT_ID)

    assert result.result_code == "1032"
    assert result.result_desc == "Request cancelled by user"


@pytest.mark.parametrize("result_code", [False, 0.0, " 0", "", None], ids=repr)
async def test_query_result_code_that_only_resembles_zero_is_no_answer(
    http: httpx.AsyncClient, daraja: respx.MockRouter, result_code: Any
) -> None:
    daraja["query"].respond(json={**QUERY_DONE, "ResultCode": result_code})

    with pytest.raises(DarajaUnavailable):
        await make_client(http).stk_query(CHECKOUT_ID)


@pytest.mark.parametrize("result_code", [0, "0"])
async def test_query_success_is_the_integer_or_the_string_zero(
    http: httpx.AsyncClient, daraja: respx.MockRouter, result_code: int | str
) -> None:
    daraja["query"].respond(json={**QUERY_DONE, "ResultCode": result_code})

    assert (await make_client(http).stk_query(CHECKOUT_ID)).result_code == "0"


@pytest.mark.parametrize("status", [500, 200])
async def test_query_answer_without_result_code_is_unavailable(
    http: httpx.AsyncClient, daraja: respx.MockRouter, status: int
) -> None:
    daraja["query"].respond(status, json={k: v for k, v in QUERY_DONE.items() if k != "ResultCode"})

    with pytest.raises(DarajaUnavailable):
        await make_client(http).stk_query(CHECKOUT_ID)


async def test_query_being_processed_is_still_processing(
    http: httpx.AsyncClient, daraja: respx.MockRouter
) -> None:
    daraja["query"].respond(500, json=STILL_PROCESSING)

    with pytest.raises(DarajaStillProcessing) as caught:
        await make_client(http).stk_query(CHECKOUT_ID)

    assert caught.value.error_code == "500.001.1001"
    assert caught.value.request_id == "req-9"
    assert daraja["query"].call_count == 1


@pytest.mark.parametrize(
    ("failure", "expected"),
    [(httpx.ReadTimeout, DarajaTimeout), (httpx.ConnectError, DarajaUnavailable)],
)
async def test_query_is_not_retried_after_a_transport_failure(
    http: httpx.AsyncClient,
    daraja: respx.MockRouter,
    failure: type[httpx.TransportError],
    expected: type[DarajaError],
) -> None:
    daraja["query"].side_effect = failure

    with pytest.raises(expected):
        await make_client(http).stk_query(CHECKOUT_ID)
    assert daraja["query"].call_count == 1


# --- local validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"amount": 12.5},
        {"amount": 0},
        {"amount": 250_001},
        {"amount": True},
        {"amount": "500"},
        {"phone_number": "0708374149"},
        {"phone_number": "25470837414"},
        {"phone_number": "254608374149"},
        {"account_reference": "ABCDEFGHIJKLM"},
        {"account_reference": ""},
        {"account_reference": "ORD-42"},
        {"account_reference": "ORDÉ42"},
        {"transaction_desc": "Cinema ticket!"},
        {"transaction_desc": ""},
        {"transaction_desc": "   "},
    ],
)
async def test_invalid_push_arguments_raise_before_any_request(
    http: httpx.AsyncClient, daraja: respx.MockRouter, overrides: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match=next(iter(overrides))):
        await push(make_client(http), **overrides)

    assert daraja.calls.call_count == 0


async def test_boundary_push_arguments_are_accepted(
    http: httpx.AsyncClient, daraja: respx.MockRouter
) -> None:
    client = make_client(http)
    await push(client, amount=1, phone_number="254112345678")
    await push(client, amount=250_000, account_reference="A" * 12, transaction_desc="D" * 13)

    assert daraja["push"].call_count == 2


async def test_empty_checkout_request_id_raises_before_any_request(
    http: httpx.AsyncClient, daraja: respx.MockRouter
) -> None:
    with pytest.raises(ValueError, match="checkout_request_id"):
        await make_client(http).stk_query("")
    assert daraja.calls.call_count == 0


# --- logging --------------------------------------------------------------------------------


async def test_logs_outcomes_without_secrets(
    http: httpx.AsyncClient, daraja: respx.MockRouter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="movietickets.daraja")
    client = make_client(http)
    await push(client)
    daraja["query"].respond(500, json=STILL_PROCESSING)
    with pytest.raises(DarajaStillProcessing):
        await client.stk_query(CHECKOUT_ID)

    assert "push accepted" in caplog.text
    assert CHECKOUT_ID in caplog.text
    assert any(
        r.levelno == logging.WARNING and "500.001.1001" in r.getMessage() for r in caplog.records
    )
    password = sent_json(daraja["push"])["Password"]
    for secret in (
        PASSKEY,
        "the-consumer-secret",
        "token-1",
        password,
        "dGhlLWtleTp0aGUtY29uc3VtZXItc2VjcmV0",
    ):
        assert secret not in caplog.text


# --- error_from_response --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "response", "expected"),
    [
        ("oauth", httpx.Response(400), DarajaAuthError),
        ("oauth", httpx.Response(500, text="oops"), DarajaUnavailable),
        ("push", httpx.Response(404, json=error_body("404.001.03")), DarajaAuthError),
        ("query", httpx.Response(404, json=error_body("404.001.03")), DarajaAuthError),
        ("push", httpx.Response(500, json=error_body("500.001.1001")), DarajaRejected),
        ("query", httpx.Response(500, json=error_body("500.001.1001")), DarajaStillProcessing),
        ("query", httpx.Response(500, json=error_body("500.003.03")), DarajaBusy),
        ("push", httpx.Response(400, json="just a string"), DarajaRejected),
        ("push", httpx.Response(500, content=b"\xff\xfe"), DarajaUnavailable),
        ("push", httpx.Response(500, json={"errorCode": 42}), DarajaRejected),
    ],
)
def test_error_from_response(
    operation: Any, response: httpx.Response, expected: type[DarajaError]
) -> None:
    error = error_from_response(response, operation=operation)

    assert type(error) is expected
    assert error.http_status == response.status_code
