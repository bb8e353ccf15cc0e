"""A Daraja-compatible STK Push service for development and end-to-end tests.

It speaks Daraja's wire format (see `wire.py`): the same paths, bodies, status codes and
error bodies as Safaricom, so the app's Daraja client cannot tell it from the real thing. It is
stateless: access tokens carry their own HMAC-signed expiry, and a CheckoutRequestID carries,
signed, everything STK Query needs (push time and the phone's last four digits). Simulators
sharing a `signing_key` therefore accept each other's tokens and ids, and survive restarts.

The outcome of a push is chosen by the last four digits of `PhoneNumber`:

| last 4 | what happens |
|---|---|
| 1032 | callback ResultCode 1032 "Request cancelled by user" |
| 0001 | callback ResultCode 1 "The balance is insufficient for the transaction." |
| 2001 | callback ResultCode 2001 "The initiator information is invalid." |
| 0017 | callback ResultCode 17 "Rule limited." (same amount, same customer, within 2 minutes) |
| 1019 | callback ResultCode 1019 "Transaction has expired" |
| 1037 | no callback; after the delay the query says ResultCode 1037 (phone unreachable) |
| 9003 | no callback (a lost callback); after the delay the query says ResultCode 0 |
| 9002 | paid, and the callback is delivered BEFORE the push response is returned |
| 9001 | the push never answers: held open `hang_seconds` (or until the client leaves), then 504 |
| 9500 | push answered HTTP 500 `500.003.1001` "Internal Server Error" |
| 9503 | push answered HTTP 503 `500.003.02` "Spike arrest violation" |
| 9400 | push answered HTTP 500 `500.001.1001` "Unable to lock subscriber, ..." |
| other | paid: callback ResultCode 0 with CallbackMetadata (Amount, receipt, date, phone) |

Callbacks are POSTed once, `callback_delay_seconds` after the push (10 s timeout, failures are
logged); STK Query says "The transaction is being processed" (HTTP 500) until that moment.
An accepted push is answered after `push_delay_seconds` (0 by default; real Daraja takes 1-3 s).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import string
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from movietickets.daraja import wire
from movietickets.kit.phone import is_msisdn

logger = logging.getLogger(__name__)

_PAID = "The service request is processed successfully."
_ACCEPTED = "Success. Request accepted for processing"
_CALLBACK_TIMEOUT = 10.0
_TIMESTAMP_TOLERANCE = timedelta(minutes=10)
_TOKEN_MAC_HEX = 24
_CHECKOUT_ID = re.compile(r"ws_CO_([0-9]{17})([0-9]{4})[0-9a-f]{8}([0-9a-f]{20})")
_CALLBACK_URL_BANNED = re.compile("mpesa|safaricom|sql|query|exec", re.IGNORECASE)
_DIGITS = re.compile(r"[0-9]+")
_TIMESTAMP = re.compile(r"[0-9]{14}")
_RECEIPT_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    consumer_key: str = "simulator-key"
    consumer_secret: str = "simulator-secret"  # noqa: S105 - a development default, not a secret
    shortcode: str = wire.SANDBOX_SHORTCODE
    passkey: str = wire.SANDBOX_PASSKEY
    # Push accepted -> callback POSTed, and the moment STK Query stops saying "being processed".
    callback_delay_seconds: float = 3.0
    # Push accepted -> its answer sent (real Daraja takes 1-3 s); the callback is not delayed
    # by it (it is still sent `callback_delay_seconds` after the push arrived).
    push_delay_seconds: float = 0.0
    token_ttl_seconds: int = 3599
    # How long the "never answers" outcome (phone ending 9001) holds the push open.
    hang_seconds: float = 120.0
    # Signs tokens and checkout ids; share it to make several simulators agree.
    signing_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))


@dataclass(frozen=True, slots=True)
class _Result:
    code: int
    desc: str
    callback: bool = True


_SUCCESS = _Result(0, _PAID)
_RESULTS = {
    "1032": _Result(1032, "Request cancelled by user"),
    "0001": _Result(1, "The balance is insufficient for the transaction."),
    "2001": _Result(2001, "The initiator information is invalid."),
    "0017": _Result(17, "Rule limited."),
    "1019": _Result(1019, "Transaction has expired"),
    "1037": _Result(1037, "DS timeout user cannot be reached", callback=False),
    "9003": _Result(0, _PAID, callback=False),
}
_EARLY_CALLBACK = "9002"
_HANG = "9001"
_PUSH_ERRORS = {
    "9500": (500, "500.003.1001", "Internal Server Error"),
    "9503": (503, "500.003.02", "Spike arrest violation"),
    "9400": (
        500,
        "500.001.1001",
        "Unable to lock subscriber, a transaction is already in process for the current subscriber",
    ),
}


class _Refusal(Exception):
    """A Daraja error body; raised anywhere in a handler, rendered by the app."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _invalid(field_name: str) -> _Refusal:
    return _Refusal(400, "400.002.02", f"Bad Request - Invalid {field_name}")


async def _error_response(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, _Refusal)
    request_id = f"{secrets.randbelow(90000) + 10000}-{secrets.randbelow(10**8)}-1"
    body = {"requestId": request_id, "errorCode": exc.code, "errorMessage": exc.message}
    return JSONResponse(body, status_code=exc.status)


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise _invalid(name)
    return value


def _number_or_text(body: dict[str, Any], name: str) -> str:
    """Shortcodes and MSISDNs: clients send them as strings or as JSON numbers."""
    value = body.get(name)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _text(body, name)


def _msisdn(body: dict[str, Any], name: str) -> str:
    value = _number_or_text(body, name)
    if not is_msisdn(value):
        raise _invalid(name)
    return value


def _amount(body: dict[str, Any]) -> int:
    value = body.get("Amount")
    # Daraja rejects decimals; a float is refused even when whole, as "1.00" would be.
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        value = int(value)
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not wire.AMOUNT_MIN <= value <= wire.AMOUNT_MAX
    ):
        raise _invalid("Amount")
    return value


def _callback_url(body: dict[str, Any]) -> str:
    url = _text(body, "CallBackURL")
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid or _CALLBACK_URL_BANNED.search(url):
        raise _invalid("CallBackURL")
    return url


@dataclass(frozen=True, slots=True)
class _Push:
    checkout_id: str
    merchant_id: str
    callback_url: str
    amount: int
    phone: str
    result: _Result


class DarajaSimulator:
    """Daraja's OAuth, STK Push and STK Query endpoints as a plain Starlette app.

    Mountable anywhere (it needs no lifespan of its own): the host calls `aclose()` on shutdown.
    """

    def __init__(
        self, config: SimulatorConfig | None = None, *, http: httpx.AsyncClient | None = None
    ) -> None:
        self.config = config or SimulatorConfig()
        self.callbacks_sent = 0
        self._http = http
        self._owns_http = http is None
        self._tasks: set[asyncio.Task[None]] = set()
        self._sending: set[asyncio.Task[None]] = set()
        self.app = Starlette(
            routes=[
                Route(wire.OAUTH_PATH, self._oauth, methods=["GET"]),
                Route(wire.STK_PUSH_PATH, self._push, methods=["POST"]),
                Route(wire.STK_QUERY_PATH, self._query, methods=["POST"]),
            ],
            exception_handlers={_Refusal: _error_response},
        )

    async def aclose(self) -> None:
        """Drops callbacks still waiting for their delay (for the app, a push that was never
        answered) and lets those already being sent finish: cancelling one mid-request would
        cut the receiving app's transaction short."""
        tasks = list(self._tasks)
        for task in tasks:
            if task not in self._sending:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._owns_http and self._http is not None:
            await self._http.aclose()
            self._http = None

    # --- signing -------------------------------------------------------------------------------

    def _mac(self, purpose: str, payload: str, hex_chars: int) -> str:
        message = f"{purpose}\0{payload}".encode()
        return hmac.new(self.config.signing_key, message, hashlib.sha256).hexdigest()[:hex_chars]

    def _new_token(self) -> str:
        expires_ms = f"{int(time.time() * 1000) + self.config.token_ttl_seconds * 1000:x}"
        return expires_ms + self._mac("token", expires_ms, _TOKEN_MAC_HEX)

    def _token_is_valid(self, token: str) -> bool:
        expires_ms, mac = token[:-_TOKEN_MAC_HEX], token[-_TOKEN_MAC_HEX:]
        # Compared as bytes: compare_digest refuses non-ASCII str, and headers may carry some.
        if not expires_ms or not hmac.compare_digest(
            mac.encode(), self._mac("token", expires_ms, _TOKEN_MAC_HEX).encode()
        ):
            return False
        return time.time() * 1000 < int(expires_ms, 16)

    def _new_checkout_id(self, pushed_at: datetime, last4: str) -> str:
        # Daraja's own ids start with ws_CO_ and the push time; ours add the outcome and a MAC.
        stamp = f"{pushed_at:%d%m%Y%H%M%S}{pushed_at.microsecond // 1000:03d}"
        unsigned = f"ws_CO_{stamp}{last4}{secrets.token_hex(4)}"
        return unsigned + self._mac("checkout", unsigned, 20)

    def _read_checkout_id(self, checkout_id: str) -> tuple[datetime, str]:
        match = _CHECKOUT_ID.fullmatch(checkout_id)
        if not match or not hmac.compare_digest(
            match[3], self._mac("checkout", checkout_id[:-20], 20)
        ):
            raise _invalid("CheckoutRequestID")
        stamp = match[1]
        pushed_at = datetime.strptime(stamp[:14], "%d%m%Y%H%M%S").replace(tzinfo=wire.NAIROBI)
        return pushed_at + timedelta(milliseconds=int(stamp[14:])), match[2]

    def _merchant_id(self, checkout_id: str) -> str:
        digest = self._mac("merchant", checkout_id, 12)
        return f"{int(digest[:4], 16)}-{int(digest[4:], 16)}-1"

    # --- request checks ------------------------------------------------------------------------

    async def _authorized_body(self, request: Request) -> dict[str, Any]:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not self._token_is_valid(token.strip()):
            raise _Refusal(404, "404.001.03", "Invalid Access Token")
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise _Refusal(400, "400.002.05", "Invalid Request Payload")
        return body

    def _check_credentials(self, body: dict[str, Any]) -> None:
        shortcode = _number_or_text(body, "BusinessShortCode")
        if shortcode != self.config.shortcode:
            raise _invalid("BusinessShortCode")
        timestamp = _text(body, "Timestamp")
        try:
            sent_at = datetime.strptime(timestamp, "%Y%m%d%H%M%S").replace(tzinfo=wire.NAIROBI)
        except ValueError:
            sent_at = None
        # A client that stamps UTC is three hours off Nairobi time and lands here too.
        if (
            sent_at is None
            or not _TIMESTAMP.fullmatch(timestamp)
            or abs(datetime.now(wire.NAIROBI) - sent_at) > _TIMESTAMP_TOLERANCE
        ):
            raise _invalid("Timestamp")
        password = _text(body, "Password")
        expected = wire.stk_password(shortcode, self.config.passkey, timestamp)
        if not hmac.compare_digest(password.encode(), expected.encode()):
            raise _Refusal(500, "500.001.1001", "Wrong credentials")

    # --- endpoints -----------------------------------------------------------------------------

    async def _oauth(self, request: Request) -> Response:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            raise _Refusal(400, "400.008.01", "Invalid Authentication passed")
        if request.query_params.get("grant_type") != "client_credentials":
            raise _Refusal(400, "400.008.02", "Invalid grant type passed")
        try:
            credentials = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error:
            credentials = b""
        expected = f"{self.config.consumer_key}:{self.config.consumer_secret}".encode()
        if not hmac.compare_digest(credentials, expected):
            return Response(status_code=400)  # Daraja answers bad credentials with no body
        token = self._new_token()
        return JSONResponse(
            {"access_token": token, "expires_in": str(self.config.token_ttl_seconds)}
        )

    async def _push(self, request: Request) -> Response:
        body = await self._authorized_body(request)
        self._check_credentials(body)
        if _text(body, "TransactionType") not in (wire.PAYBILL, wire.TILL):
            raise _invalid("TransactionType")
        amount = _amount(body)
        _msisdn(body, "PartyA")
        _number_or_text(body, "PartyB")
        phone = _msisdn(body, "PhoneNumber")
        callback_url = _callback_url(body)
        reference = _text(body, "AccountReference")
        if not (reference.isascii() and reference.isalnum()) or (
            len(reference) > wire.ACCOUNT_REFERENCE_MAX
        ):
            raise _invalid("AccountReference")
        if len(_text(body, "TransactionDesc")) > wire.TRANSACTION_DESC_MAX:
            raise _invalid("TransactionDesc")

        last4 = phone[-4:]
        if last4 in _PUSH_ERRORS:
            logger.info("STK push refused (outcome %s)", last4)
            raise _Refusal(*_PUSH_ERRORS[last4])
        if last4 == _HANG:
            logger.info("STK push held open (outcome %s)", last4)
            return await self._hold(request)

        checkout_id = self._new_checkout_id(datetime.now(wire.NAIROBI), last4)
        push = _Push(
            checkout_id,
            self._merchant_id(checkout_id),
            callback_url,
            amount,
            phone,
            _RESULTS.get(last4, _SUCCESS),
        )
        logger.info("STK push accepted: %s", checkout_id)
        if last4 == _EARLY_CALLBACK:
            await self._deliver(push)
        elif push.result.callback:
            self._schedule(push)
        if self.config.push_delay_seconds:
            # Accepted already: a client that goes away meanwhile still gets the callback.
            await asyncio.sleep(self.config.push_delay_seconds)
        return JSONResponse(
            {
                "MerchantRequestID": push.merchant_id,
                "CheckoutRequestID": checkout_id,
                "ResponseCode": "0",
                "ResponseDescription": _ACCEPTED,
                "CustomerMessage": _ACCEPTED,
            }
        )

    async def _query(self, request: Request) -> Response:
        body = await self._authorized_body(request)
        self._check_credentials(body)
        checkout_id = _text(body, "CheckoutRequestID")
        pushed_at, last4 = self._read_checkout_id(checkout_id)
        delay = 0.0 if last4 == _EARLY_CALLBACK else self.config.callback_delay_seconds
        if datetime.now(wire.NAIROBI) < pushed_at + timedelta(seconds=delay):
            raise _Refusal(500, "500.001.1001", "The transaction is being processed")
        result = _RESULTS.get(last4, _SUCCESS)
        return JSONResponse(
            {
                "ResponseCode": "0",
                "ResponseDescription": "The service request has been accepted successsfully",
                "MerchantRequestID": self._merchant_id(checkout_id),
                "CheckoutRequestID": checkout_id,
                "ResultCode": str(result.code),
                "ResultDesc": result.desc,
            }
        )

    async def _hold(self, request: Request) -> Response:
        # Waiting on receive() ends the hold early when the client gives up, so a dev server
        # is not left with a request that blocks its graceful shutdown for minutes.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.hang_seconds):
                # ASGI servers block receive() after the body until the client disconnects.
                while (await request.receive())["type"] != "http.disconnect":
                    pass
        return Response(status_code=504)

    # --- callbacks -----------------------------------------------------------------------------

    def _schedule(self, push: _Push) -> None:
        task = asyncio.create_task(self._deliver_later(push))
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    async def _deliver_later(self, push: _Push) -> None:
        await asyncio.sleep(self.config.callback_delay_seconds)
        task = asyncio.current_task()
        assert task is not None
        self._sending.add(task)
        try:
            await self._deliver(push)
        finally:
            self._sending.discard(task)

    async def _deliver(self, push: _Push) -> None:
        callback: dict[str, Any] = {
            "MerchantRequestID": push.merchant_id,
            "CheckoutRequestID": push.checkout_id,
            "ResultCode": push.result.code,
            "ResultDesc": push.result.desc,
        }
        if push.result.code == 0:
            receipt = "".join(secrets.choice(_RECEIPT_ALPHABET) for _ in range(10))
            paid_at = wire.daraja_timestamp(datetime.now(wire.NAIROBI))
            callback["CallbackMetadata"] = {
                "Item": [
                    {"Name": "Amount", "Value": float(push.amount)},
                    {"Name": "MpesaReceiptNumber", "Value": receipt},
                    {"Name": "Balance"},
                    {"Name": "TransactionDate", "Value": int(paid_at)},
                    {"Name": "PhoneNumber", "Value": int(push.phone)},
                ]
            }
        if self._http is None:
            self._http = httpx.AsyncClient()
        try:
            response = await self._http.post(
                push.callback_url,
                json={"Body": {"stkCallback": callback}},
                timeout=_CALLBACK_TIMEOUT,
            )
        except Exception as exc:  # one attempt, like Daraja: a lost callback is a test case
            # The URL is not logged: it usually carries the app's callback secret.
            logger.warning("callback %s failed: %s", push.checkout_id, type(exc).__name__)
            return
        self.callbacks_sent += 1
        logger.info("callback %s delivered: HTTP %d", push.checkout_id, response.status_code)


def create_simulator_app(config: SimulatorConfig | None = None) -> Starlette:
    """A standalone simulator (`movietickets simulator`) whose lifespan closes it."""
    simulator = DarajaSimulator(config)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await simulator.aclose()

    app = Starlette(routes=[Mount("/", app=simulator.app)], lifespan=lifespan)
    app.state.simulator = simulator
    return app
