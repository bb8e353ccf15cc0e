"""The simulator answers like Daraja: driven in-process, its callbacks received over real HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from movietickets.daraja import wire
from movietickets.daraja.simulator import DarajaSimulator, SimulatorConfig, create_simulator_app

FAST = SimulatorConfig(callback_delay_seconds=0.05, signing_key=b"test-signing-key")
PHONE = "254708374149"
MISSING = object()
WAIT = 5.0


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# Nothing listens there: callbacks sent to it fail at once, without DNS or network.
NOWHERE = f"http://127.0.0.1:{_closed_port()}/hooks/pay"


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # pytest owns the process's signal handlers


@asynccontextmanager
async def serve(app: ASGIApp, *, lifespan: Literal["on", "off"] = "off") -> AsyncIterator[str]:
    """Run `app` under uvicorn on a free port in this loop; yield its base URL."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan=lifespan, ws="none"
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            assert not task.done(), "uvicorn did not start"
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass
class Delivery:
    query: str
    body: dict[str, Any]


@dataclass
class Receiver:
    url: str
    deliveries: asyncio.Queue[Delivery]

    async def next(self) -> Delivery:
        return await asyncio.wait_for(self.deliveries.get(), WAIT)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    deliveries: asyncio.Queue[Delivery] = asyncio.Queue()

    async def hook(request: Request) -> Response:
        await deliveries.put(Delivery(request.url.query, await request.json()))
        return JSONResponse({"ResultCode": 0, "ResultDesc": "Accepted"})

    app = Starlette(routes=[Route("/hooks/pay", hook, methods=["POST"])])
    async with serve(app) as base_url:
        yield Receiver(f"{base_url}/hooks/pay", deliveries)


def credentials(timestamp: str | None = None) -> dict[str, Any]:
    timestamp = timestamp or wire.daraja_timestamp(datetime.now(UTC))
    return {
        "BusinessShortCode": FAST.shortcode,
        "Password": wire.stk_password(FAST.shortcode, FAST.passkey, timestamp),
        "Timestamp": timestamp,
    }


def push_body(phone: str = PHONE, callback_url: str = NOWHERE, **changes: Any) -> dict[str, Any]:
    body = credentials() | {
        "TransactionType": wire.PAYBILL,
        "Amount": 1000,
        "PartyA": phone,
        "PartyB": FAST.shortcode,
        "PhoneNumber": phone,
        "CallBackURL": callback_url,
        "AccountReference": "ORDER42",
        "TransactionDesc": "Tickets",
    }
    return body | changes


@dataclass
class Daraja:
    sim: DarajaSimulator
    http: httpx.AsyncClient
    token: str = field(default="")

    async def login(self) -> str:
        response = await self.http.get(
            wire.OAUTH_PATH,
            params={"grant_type": "client_credentials"},
            auth=(self.sim.config.consumer_key, self.sim.config.consumer_secret),
        )
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    async def post(
        self, path: str, body: dict[str, Any], token: str | None = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return await self.http.post(path, json=body, headers=headers)

    async def push(self, body: dict[str, Any]) -> httpx.Response:
        return await self.post(wire.STK_PUSH_PATH, body)

    async def accepted_push(self, body: dict[str, Any]) -> str:
        response = await self.push(body)
        assert response.status_code == 200, response.text
        return str(response.json()["CheckoutRequestID"])

    async def query(self, checkout_id: str) -> httpx.Response:
        body = credentials() | {"CheckoutRequestID": checkout_id}
        return await self.post(wire.STK_QUERY_PATH, body)


@asynccontextmanager
async def open_daraja(config: SimulatorConfig = FAST) -> AsyncIterator[Daraja]:
    sim = DarajaSimulator(config)
    transport = httpx.ASGITransport(app=sim.app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://sim") as http:
            daraja = Daraja(sim, http)
            daraja.token = await daraja.login()
            yield daraja
    finally:
        await sim.aclose()


@pytest.fixture
async def daraja() -> AsyncIterator[Daraja]:
    async with open_daraja() as opened:
        yield opened


def assert_error(response: httpx.Response, status: int, code: str, message: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"requestId", "errorCode", "errorMessage"}
    assert (body["errorCode"], body["errorMessage"]) == (code, message)


async def eventually(condition: Callable[[], bool]) -> None:
    for _ in range(int(WAIT / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition still false after the wait")


def items_by_name(callback: dict[str, Any]) -> dict[str, dict[str, Any]]:
    items = callback["CallbackMetadata"]["Item"]
    return {item["Name"]: item for item in items}


# --- OAuth -----------------------------------------------------------------------------------


async def test_oauth_issues_a_token_with_string_expiry(daraja: Daraja) -> None:
    response = await daraja.http.get(
        wire.OAUTH_PATH,
        params={"grant_type": "client_credentials"},
        auth=("simulator-key", "simulator-secret"),
    )
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "expires_in"}
    assert body["expires_in"] == "3599"
    assert (await daraja.query("ws_CO_x")).status_code == 400  # the token is accepted


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": "Basic " + "c2ltdWxhdG9yLWtleTp3cm9uZw=="}, {"Authorization": "Basic !!"}],
    ids=["wrong-secret", "not-base64"],
)
async def test_oauth_wrong_credentials_get_an_empty_400(
    daraja: Daraja, headers: dict[str, str]
) -> None:
    response = await daraja.http.get(
        wire.OAUTH_PATH, params={"grant_type": "client_credentials"}, headers=headers
    )
    assert response.status_code == 400
    assert response.content == b""


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer abc"}], ids=["none", "bearer"])
async def test_oauth_refuses_other_auth_schemes(daraja: Daraja, headers: dict[str, str]) -> None:
    response = await daraja.http.get(
        wire.OAUTH_PATH, params={"grant_type": "client_credentials"}, headers=headers
    )
    assert_error(response, 400, "400.008.01", "Invalid Authentication passed")


async def test_oauth_refuses_other_grant_types(daraja: Daraja) -> None:
    response = await daraja.http.get(
        wire.OAUTH_PATH,
        params={"grant_type": "password"},
        auth=("simulator-key", "simulator-secret"),
    )
    assert_error(response, 400, "400.008.02", "Invalid grant type passed")


async def test_expired_token_is_refused() -> None:
    async with open_daraja(replace(FAST, token_ttl_seconds=0)) as daraja:
        assert_error(await daraja.push(push_body()), 404, "404.001.03", "Invalid Access Token")


@pytest.mark.parametrize("token", [" ", "garbage", "f" * 40])
async def test_invalid_tokens_are_refused(daraja: Daraja, token: str) -> None:
    response = await daraja.post(wire.STK_PUSH_PATH, push_body(), token=token)
    assert_error(response, 404, "404.001.03", "Invalid Access Token")


async def test_missing_authorization_is_refused(daraja: Daraja) -> None:
    response = await daraja.http.post(wire.STK_QUERY_PATH, json=credentials())
    assert_error(response, 404, "404.001.03", "Invalid Access Token")


# --- STK Push validation -----------------------------------------------------------------------

FIELD_RULES: list[tuple[str, object]] = [
    ("BusinessShortCode", "600000"),
    ("BusinessShortCode", MISSING),
    ("Password", MISSING),
    ("Timestamp", "2024-01-01 10:00"),
    ("Timestamp", "20241301000000"),
    ("Timestamp", 20240101100000),
    ("Timestamp", MISSING),
    ("TransactionType", "CustomerPayBill"),
    ("TransactionType", MISSING),
    ("Amount", 0),
    ("Amount", 250_001),
    ("Amount", 12.5),
    ("Amount", "12.5"),
    ("Amount", 100.0),
    ("Amount", -5),
    ("Amount", True),
    ("Amount", "ten"),
    ("Amount", MISSING),
    ("PartyA", "0708374149"),
    ("PartyA", "254808374149"),
    ("PartyA", MISSING),
    ("PartyB", ""),
    ("PartyB", MISSING),
    ("PhoneNumber", "25470837414"),
    ("PhoneNumber", "+254708374149"),
    ("PhoneNumber", MISSING),
    ("CallBackURL", "ftp://example.com/hooks"),
    ("CallBackURL", "example.com/hooks"),
    ("CallBackURL", "http://[::1/hooks"),
    ("CallBackURL", "https://example.com/MPesa/hooks"),
    ("CallBackURL", "https://safaricom.example.com/hooks"),
    ("CallBackURL", "https://example.com/hooks?q=SQL"),
    ("CallBackURL", "https://example.com/query"),
    ("CallBackURL", "https://example.com/exec/hooks"),
    ("CallBackURL", MISSING),
    ("AccountReference", ""),
    ("AccountReference", "ORDER-42"),
    ("AccountReference", "A" * 13),
    ("AccountReference", MISSING),
    ("TransactionDesc", ""),
    ("TransactionDesc", "x" * 14),
    ("TransactionDesc", MISSING),
]


@pytest.mark.parametrize(
    ("name", "value"), FIELD_RULES, ids=[f"{name}={value!r}" for name, value in FIELD_RULES]
)
async def test_push_field_rules(daraja: Daraja, name: str, value: object) -> None:
    body = push_body()
    if value is MISSING:
        del body[name]
    else:
        body[name] = value
    response = await daraja.push(body)
    assert_error(response, 400, "400.002.02", f"Bad Request - Invalid {name}")


@pytest.mark.parametrize(
    "changes",
    [
        {"Amount": "250000"},
        {"Amount": 1},
        {"PartyA": 254708374149, "PhoneNumber": 254708374149, "PartyB": 174379},
        {"BusinessShortCode": 174379},
        {"TransactionType": wire.TILL, "PartyB": "5551234"},
        {"AccountReference": "A" * 12, "TransactionDesc": "x" * 13},
        {"CallBackURL": "https://example.com/hooks/pay?secret=abc"},
    ],
)
async def test_push_accepts_what_daraja_accepts(changes: dict[str, Any]) -> None:
    # The callbacks are cancelled by aclose(): the long delay keeps them off the network.
    async with open_daraja(replace(FAST, callback_delay_seconds=60)) as slow:
        response = await slow.push(push_body(**changes))
    assert response.status_code == 200, response.text


async def test_push_refuses_malformed_json(daraja: Daraja) -> None:
    response = await daraja.http.post(
        wire.STK_PUSH_PATH,
        content=b"{not json",
        headers={"Authorization": f"Bearer {daraja.token}", "Content-Type": "application/json"},
    )
    assert_error(response, 400, "400.002.05", "Invalid Request Payload")


async def test_push_refuses_a_utc_timestamp(daraja: Daraja) -> None:
    utc = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    response = await daraja.push(push_body() | credentials(utc))
    assert_error(response, 400, "400.002.02", "Bad Request - Invalid Timestamp")


async def test_push_refuses_a_stale_timestamp(daraja: Daraja) -> None:
    stale = wire.daraja_timestamp(datetime.now(UTC) - timedelta(minutes=11))
    response = await daraja.push(push_body() | credentials(stale))
    assert_error(response, 400, "400.002.02", "Bad Request - Invalid Timestamp")


@pytest.mark.parametrize(
    "password",
    [
        wire.stk_password(
            FAST.shortcode, "wrong-passkey", wire.daraja_timestamp(datetime.now(UTC))
        ),
        wire.stk_password(FAST.shortcode, FAST.passkey, "20200101000000"),
    ],
    ids=["wrong-passkey", "other-timestamp"],
)
async def test_push_refuses_a_wrong_password(daraja: Daraja, password: str) -> None:
    response = await daraja.push(push_body(Password=password))
    assert_error(response, 500, "500.001.1001", "Wrong credentials")


@pytest.mark.parametrize(
    ("last4", "status", "code", "message"),
    [
        ("9500", 500, "500.003.1001", "Internal Server Error"),
        ("9503", 503, "500.003.02", "Spike arrest violation"),
        (
            "9400",
            500,
            "500.001.1001",
            "Unable to lock subscriber, a transaction is already in process for the current "
            "subscriber",
        ),
    ],
)
async def test_push_errors(
    daraja: Daraja, last4: str, status: int, code: str, message: str
) -> None:
    response = await daraja.push(push_body(phone=f"25470837{last4}"))
    assert_error(response, status, code, message)
    assert daraja.sim.callbacks_sent == 0


async def test_push_that_never_answers_is_held_then_504() -> None:
    async with open_daraja(replace(FAST, hang_seconds=0.3)) as daraja:
        started = time.monotonic()
        response = await daraja.push(push_body(phone="254708379001"))
        assert time.monotonic() - started >= 0.3
    assert response.status_code == 504
    assert response.content == b""


async def test_held_push_ends_when_the_client_gives_up() -> None:
    # Otherwise uvicorn's graceful shutdown would wait out the full hang_seconds.
    app = create_simulator_app(replace(FAST, hang_seconds=120))
    async with asyncio.timeout(WAIT):
        async with (
            serve(app, lifespan="on") as base_url,
            httpx.AsyncClient(base_url=base_url) as http,
        ):
            daraja = Daraja(app.state.simulator, http)
            daraja.token = await daraja.login()
            with pytest.raises(httpx.ReadTimeout):
                await http.post(
                    wire.STK_PUSH_PATH,
                    json=push_body(phone="254708379001"),
                    headers={"Authorization": f"Bearer {daraja.token}"},
                    timeout=0.2,
                )


# --- outcomes ----------------------------------------------------------------------------------


async def test_paid_push_calls_back_with_daraja_shape(daraja: Daraja, receiver: Receiver) -> None:
    url = f"{receiver.url}?secret=s3cr3t&order=42"
    response = await daraja.push(push_body(callback_url=url, Amount="1000"))
    assert response.status_code == 200
    ack = response.json()
    assert set(ack) == {
        "MerchantRequestID",
        "CheckoutRequestID",
        "ResponseCode",
        "ResponseDescription",
        "CustomerMessage",
    }
    assert ack["ResponseCode"] == "0"
    assert ack["ResponseDescription"] == ack["CustomerMessage"]
    assert ack["CustomerMessage"] == "Success. Request accepted for processing"
    checkout_id = ack["CheckoutRequestID"]
    assert re.fullmatch(r"ws_CO_[A-Za-z0-9_]+", checkout_id)
    assert len(checkout_id) < 64

    delivery = await receiver.next()
    assert delivery.query == "secret=s3cr3t&order=42"
    assert list(delivery.body) == ["Body"]
    assert list(delivery.body["Body"]) == ["stkCallback"]
    callback = delivery.body["Body"]["stkCallback"]
    assert set(callback) == {
        "MerchantRequestID",
        "CheckoutRequestID",
        "ResultCode",
        "ResultDesc",
        "CallbackMetadata",
    }
    assert callback["MerchantRequestID"] == ack["MerchantRequestID"]
    assert callback["CheckoutRequestID"] == checkout_id
    assert callback["ResultCode"] == 0
    items = items_by_name(callback)
    assert set(items) == {
        "Amount",
        "MpesaReceiptNumber",
        "Balance",
        "TransactionDate",
        "PhoneNumber",
    }
    assert items["Amount"]["Value"] == 1000
    assert items["Balance"] == {"Name": "Balance"}
    assert re.fullmatch(r"[A-Z0-9]{10}", items["MpesaReceiptNumber"]["Value"])
    assert items["PhoneNumber"]["Value"] == int(PHONE)
    paid_at = items["TransactionDate"]["Value"]
    assert isinstance(paid_at, int)
    paid_at_nairobi = datetime.strptime(str(paid_at), "%Y%m%d%H%M%S").replace(tzinfo=wire.NAIROBI)
    assert abs(datetime.now(UTC) - paid_at_nairobi) < timedelta(minutes=1)
    # The receiver has the body a moment before the simulator has its answer.
    await eventually(lambda: daraja.sim.callbacks_sent == 1)

    query = await daraja.query(checkout_id)
    assert query.status_code == 200
    assert query.json() == {
        "ResponseCode": "0",
        "ResponseDescription": "The service request has been accepted successsfully",
        "MerchantRequestID": ack["MerchantRequestID"],
        "CheckoutRequestID": checkout_id,
        "ResultCode": "0",
        "ResultDesc": "The service request is processed successfully.",
    }


async def test_ids_and_receipts_are_unique(daraja: Daraja, receiver: Receiver) -> None:
    checkout_ids = {await daraja.accepted_push(push_body(callback_url=receiver.url)) for _ in "ab"}
    deliveries = [await receiver.next() for _ in "ab"]
    receipts = {
        items_by_name(d.body["Body"]["stkCallback"])["MpesaReceiptNumber"]["Value"]
        for d in deliveries
    }
    assert len(checkout_ids) == len(receipts) == 2


@pytest.mark.parametrize(
    ("last4", "code", "desc"),
    [
        ("1032", 1032, "Request cancelled by user"),
        ("0001", 1, "The balance is insufficient for the transaction."),
        ("2001", 2001, "The initiator information is invalid."),
        ("0017", 17, "Rule limited."),
        ("1019", 1019, "Transaction has expired"),
    ],
)
async def test_failure_callbacks(
    daraja: Daraja, receiver: Receiver, last4: str, code: int, desc: str
) -> None:
    checkout_id = await daraja.accepted_push(
        push_body(phone=f"25470837{last4}", callback_url=receiver.url)
    )
    callback = (await receiver.next()).body["Body"]["stkCallback"]
    assert callback["CheckoutRequestID"] == checkout_id
    assert (callback["ResultCode"], callback["ResultDesc"]) == (code, desc)
    assert "CallbackMetadata" not in callback
    query = (await daraja.query(checkout_id)).json()
    assert (query["ResultCode"], query["ResultDesc"]) == (str(code), desc)


@pytest.mark.parametrize(("last4", "code"), [("1037", "1037"), ("9003", "0")])
async def test_silent_outcomes_answer_only_the_query(
    daraja: Daraja, receiver: Receiver, last4: str, code: str
) -> None:
    checkout_id = await daraja.accepted_push(
        push_body(phone=f"25470837{last4}", callback_url=receiver.url)
    )
    await asyncio.sleep(FAST.callback_delay_seconds + 0.25)
    assert receiver.deliveries.empty()
    assert daraja.sim.callbacks_sent == 0
    response = await daraja.query(checkout_id)
    assert response.status_code == 200
    assert response.json()["ResultCode"] == code


async def test_query_says_processing_until_the_delay() -> None:
    async with open_daraja(replace(FAST, callback_delay_seconds=60)) as daraja:
        checkout_id = await daraja.accepted_push(push_body())
        response = await daraja.query(checkout_id)
    assert_error(response, 500, "500.001.1001", "The transaction is being processed")


async def test_callback_can_overtake_the_push_answer(daraja: Daraja, receiver: Receiver) -> None:
    checkout_id = await daraja.accepted_push(
        push_body(phone="254708379002", callback_url=receiver.url)
    )
    delivered = receiver.deliveries.get_nowait()  # already there when the push answered
    assert delivered.body["Body"]["stkCallback"]["CheckoutRequestID"] == checkout_id
    assert delivered.body["Body"]["stkCallback"]["ResultCode"] == 0
    assert (await daraja.query(checkout_id)).json()["ResultCode"] == "0"


async def test_a_push_answered_late_still_calls_back_on_time(receiver: Receiver) -> None:
    """Real Daraja takes seconds to answer a push; the answer's delay does not hold back the
    callback, nor does a client that stops waiting for the answer."""
    async with open_daraja(replace(FAST, push_delay_seconds=60)) as daraja:
        answer = asyncio.create_task(daraja.push(push_body(callback_url=receiver.url)))
        delivered = await receiver.next()
        assert not answer.done()
        answer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await answer
    assert delivered.body["Body"]["stkCallback"]["ResultCode"] == 0


@pytest.mark.parametrize(
    "forge",
    [
        lambda cid: cid[:23] + "1037" + cid[27:],  # another outcome, same MAC
        lambda cid: cid[:-1] + ("0" if cid[-1] != "0" else "1"),
        lambda cid: "ws_CO_191220191020363925",
        lambda cid: 42,
    ],
    ids=["outcome", "mac", "daraja-id", "number"],
)
async def test_query_refuses_forged_checkout_ids(daraja: Daraja, forge: Any) -> None:
    checkout_id = await daraja.accepted_push(push_body())
    body = credentials() | {"CheckoutRequestID": forge(checkout_id)}
    response = await daraja.post(wire.STK_QUERY_PATH, body)
    assert_error(response, 400, "400.002.02", "Bad Request - Invalid CheckoutRequestID")


async def test_query_checks_credentials(daraja: Daraja) -> None:
    checkout_id = await daraja.accepted_push(push_body())
    body = credentials() | {"CheckoutRequestID": checkout_id, "Password": "bm9wZQ=="}
    response = await daraja.post(wire.STK_QUERY_PATH, body)
    assert_error(response, 500, "500.001.1001", "Wrong credentials")


async def test_failed_delivery_is_logged_not_raised(
    daraja: Daraja, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="movietickets.daraja.simulator"):
        checkout_id = await daraja.accepted_push(push_body())
        await eventually(lambda: any("failed" in r.getMessage() for r in caplog.records))
    failures = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in failures] == [f"callback {checkout_id} failed: ConnectError"]
    assert daraja.sim.callbacks_sent == 0
    assert FAST.passkey not in caplog.text


async def test_simulators_sharing_a_key_agree() -> None:
    async with open_daraja() as first, open_daraja() as second:
        response = await second.post(wire.STK_PUSH_PATH, push_body(), token=first.token)
        assert response.status_code == 200
        checkout_id = response.json()["CheckoutRequestID"]
        await asyncio.sleep(FAST.callback_delay_seconds + 0.05)
        assert (await first.query(checkout_id)).json()["ResultCode"] == "0"
        async with open_daraja(replace(FAST, signing_key=b"another key")) as stranger:
            rejected = await stranger.post(wire.STK_PUSH_PATH, push_body(), token=first.token)
            assert_error(rejected, 404, "404.001.03", "Invalid Access Token")


async def test_standalone_app_over_http(receiver: Receiver) -> None:
    app = create_simulator_app(FAST)
    async with serve(app, lifespan="on") as base_url, httpx.AsyncClient(base_url=base_url) as http:
        daraja = Daraja(app.state.simulator, http)
        daraja.token = await daraja.login()
        checkout_id = await daraja.accepted_push(push_body(callback_url=receiver.url))
        callback = (await receiver.next()).body["Body"]["stkCallback"]
        assert callback["CheckoutRequestID"] == checkout_id
        assert (await daraja.query(checkout_id)).json()["ResultCode"] == "0"
    assert app.state.simulator.callbacks_sent == 1


async def test_mounted_in_a_fastapi_app() -> None:
    sim = DarajaSimulator(FAST)
    host = FastAPI()
    host.mount("/simulator/daraja", sim.app)
    transport = httpx.ASGITransport(app=host)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            mounted = Daraja(sim, http)
            response = await http.get(
                "/simulator/daraja" + wire.OAUTH_PATH,
                params={"grant_type": "client_credentials"},
                auth=(FAST.consumer_key, FAST.consumer_secret),
            )
            mounted.token = response.json()["access_token"]
            refused = await mounted.post(
                "/simulator/daraja" + wire.STK_PUSH_PATH, push_body(Amount=0)
            )
            assert_error(refused, 400, "400.002.02", "Bad Request - Invalid Amount")
            assert host.openapi()["paths"] == {}
    finally:
        await sim.aclose()


async def test_closing_finishes_callbacks_in_flight_and_drops_waiting_ones() -> None:
    # A receiver slow to answer: cancelling its callback mid-request would cut the receiving
    # app's transaction short (in the service, the callback's own database transaction).
    arrived = asyncio.Event()
    finished: list[str] = []

    async def slow_hook(request: Request) -> Response:
        body = await request.json()
        arrived.set()
        await asyncio.sleep(0.3)
        finished.append(body["Body"]["stkCallback"]["CheckoutRequestID"])
        return JSONResponse({"ResultCode": 0, "ResultDesc": "Accepted"})

    app = Starlette(routes=[Route("/hooks/pay", slow_hook, methods=["POST"])])
    async with serve(app) as base_url:
        async with open_daraja() as daraja:
            sending = await daraja.accepted_push(push_body(callback_url=f"{base_url}/hooks/pay"))
            await asyncio.wait_for(arrived.wait(), WAIT)
            daraja.sim.config = replace(FAST, callback_delay_seconds=60)
            await daraja.accepted_push(push_body(callback_url=f"{base_url}/hooks/pay"))
            started = time.monotonic()
        # open_daraja closed the simulator: it waited for the first callback only.
        assert finished == [sending]
        assert time.monotonic() - started < 5
        assert daraja.sim.callbacks_sent == 1
