"""Async client for Daraja's OAuth, STK Push and STK Query endpoints.

The client owns the wire format and the OAuth token, nothing else: it never retries a push
(a resent push can prompt the customer twice), and it uses the process's shared
`httpx.AsyncClient` without ever closing it.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import httpx

from movietickets.daraja import wire
from movietickets.daraja.errors import (
    DarajaAuthError,
    DarajaError,
    DarajaRejected,
    DarajaTimeout,
    DarajaUnavailable,
    error_from_response,
    json_object,
    normalise_code,
)
from movietickets.kit.phone import is_msisdn

__all__ = ["DarajaClient", "DarajaConfig", "StkPushAccepted", "StkQueryResult"]

logger = logging.getLogger(__name__)

DEFAULT_EXPIRES_IN = 3599.0

# Failures raised before any byte of the request can have reached Daraja.
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)


@dataclass(frozen=True, slots=True)
class DarajaConfig:
    base_url: str
    consumer_key: str
    consumer_secret: str = field(repr=False)
    shortcode: str
    passkey: str = field(repr=False)
    transaction_type: str = wire.PAYBILL
    party_b: str | None = None
    token_refresh_margin_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.transaction_type not in (wire.PAYBILL, wire.TILL):
            raise ValueError(f"transaction_type must be {wire.PAYBILL} or {wire.TILL}")


@dataclass(frozen=True, slots=True)
class StkPushAccepted:
    merchant_request_id: str
    checkout_request_id: str
    response_code: str
    response_description: str
    customer_message: str


@dataclass(frozen=True, slots=True)
class StkQueryResult:
    response_code: str
    response_description: str
    merchant_request_id: str
    checkout_request_id: str
    result_code: str
    result_desc: str


def _utc_now() -> datetime:
    return datetime.now(UTC)


class DarajaClient:
    """Lipa Na M-Pesa Online (STK Push and STK Query) over the process's shared httpx client.

    One OAuth token is cached and refreshed by one caller at a time; a 401 or Daraja's
    `404.001.03` (invalid token) refreshes it and retries the request once. Every failure is
    one of the typed errors of `daraja.errors` (DarajaTimeout: the outcome is unknown).
    A push is never resent by this client.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        config: DarajaConfig,
        *,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._http = http
        self._config = config
        self._clock = clock
        self._base_url = config.base_url.rstrip("/")
        self._token: str | None = None
        self._token_refresh_at = datetime.min.replace(tzinfo=UTC)
        self._token_lock = asyncio.Lock()

    async def access_token(self) -> str:
        """A valid OAuth token: cached, and refreshed by one caller at a time."""
        token = self._cached_token()
        if token is None:
            async with self._token_lock:
                # Whoever held the lock before us has most likely refreshed it already.
                token = self._cached_token() or await self._fetch_token()
        return token

    async def stk_push(
        self,
        *,
        phone_number: str,
        amount: int,
        account_reference: str,
        transaction_desc: str,
        callback_url: str,
    ) -> StkPushAccepted:
        """Ask Daraja to prompt `phone_number`; the answer is an acknowledgement, not a payment.

        Raises ValueError before any I/O for arguments Daraja would refuse; a DarajaTimeout
        means the prompt may have been sent: never call this again for the same order.
        """
        _check_push_arguments(phone_number, amount, account_reference, transaction_desc)
        config = self._config
        body: dict[str, object] = {
            **self._credentials(),
            "TransactionType": config.transaction_type,
            "Amount": amount,
            "PartyA": phone_number,
            "PartyB": config.party_b or config.shortcode,
            "PhoneNumber": phone_number,
            "CallBackURL": callback_url,
            "AccountReference": account_reference,
            "TransactionDesc": transaction_desc,
        }
        payload = await self._post("push", wire.STK_PUSH_PATH, body)
        checkout_request_id = payload.get("CheckoutRequestID")
        if not isinstance(checkout_request_id, str) or not checkout_request_id:
            raise _logged("push", _unreadable("push", "no CheckoutRequestID"))
        accepted = StkPushAccepted(
            merchant_request_id=_text(payload, "MerchantRequestID"),
            checkout_request_id=checkout_request_id,
            response_code="0",
            response_description=_text(payload, "ResponseDescription"),
            customer_message=_text(payload, "CustomerMessage"),
        )
        logger.info(
            "daraja push accepted: checkout_request_id=%s merchant_request_id=%s "
            "amount=%s account_reference=%s",
            accepted.checkout_request_id,
            accepted.merchant_request_id,
            amount,
            account_reference,
        )
        return accepted

    async def stk_query(self, checkout_request_id: str) -> StkQueryResult:
        """The state of a push. DarajaStillProcessing means the customer has not answered yet."""
        if not checkout_request_id:
            raise ValueError("checkout_request_id must not be empty")
        body = {**self._credentials(), "CheckoutRequestID": checkout_request_id}
        payload = await self._post("query", wire.STK_QUERY_PATH, body)
        # As strictly as a callback's: `false`, `0.0` or `" 0"` is no answer, never success.
        result_code = wire.result_code(payload.get("ResultCode"))
        if result_code is None:
            raise _logged("query", DarajaUnavailable("no readable ResultCode", http_status=200))
        result = StkQueryResult(
            response_code="0",
            response_description=_text(payload, "ResponseDescription"),
            merchant_request_id=_text(payload, "MerchantRequestID"),
            checkout_request_id=_text(payload, "CheckoutRequestID") or checkout_request_id,
            result_code=result_code,
            result_desc=_text(payload, "ResultDesc"),
        )
        logger.info(
            "daraja query answered: checkout_request_id=%s result_code=%s",
            result.checkout_request_id,
            result_code,
        )
        return result

    def _credentials(self) -> dict[str, object]:
        # One timestamp per request: Daraja checks the Password against the body's Timestamp.
        timestamp = wire.daraja_timestamp(self._clock())
        shortcode = self._config.shortcode
        return {
            "BusinessShortCode": shortcode,
            "Password": wire.stk_password(shortcode, self._config.passkey, timestamp),
            "Timestamp": timestamp,
        }

    def _cached_token(self) -> str | None:
        if self._token is not None and self._clock() < self._token_refresh_at:
            return self._token
        return None

    async def _fetch_token(self) -> str:
        issued_at = self._clock()
        config = self._config
        basic = base64.b64encode(f"{config.consumer_key}:{config.consumer_secret}".encode())
        try:
            response = await self._http.get(
                self._base_url + wire.OAUTH_PATH,
                params={"grant_type": "client_credentials"},
                headers={"Authorization": f"Basic {basic.decode()}"},
            )
        except httpx.TransportError as exc:
            # Without a token nothing was pushed, so even a read timeout means "not sent".
            error = DarajaUnavailable(f"no answer to OAuth ({type(exc).__name__})")
            raise _logged("oauth", error) from exc
        if response.status_code != 200:
            raise _logged("oauth", error_from_response(response, operation="oauth"))
        payload = json_object(response) or {}
        token = payload.get("access_token")
        if not isinstance(token, str) or not token:
            raise _logged("oauth", DarajaUnavailable("no access_token", http_status=200))
        expires_in = _expires_in(payload.get("expires_in"))
        self._token = token
        self._token_refresh_at = issued_at + timedelta(
            seconds=expires_in - config.token_refresh_margin_seconds
        )
        logger.info("daraja oauth: new token, expires_in=%ss", expires_in)
        return token

    def _invalidate(self, token: str) -> None:
        # Only the token that was refused: a concurrent caller may already hold a newer one.
        if self._token == token:
            self._token = None

    async def _post(
        self, operation: Literal["push", "query"], path: str, body: dict[str, object]
    ) -> dict[str, object]:
        url = self._base_url + path
        token = await self.access_token()
        response = await self._send(operation, url, body, token)
        error = _refusal(response, operation)
        if isinstance(error, DarajaAuthError):
            # Daraja refused the token before processing anything, so one resend is safe.
            self._invalidate(token)
            response = await self._send(operation, url, body, await self.access_token())
            error = _refusal(response, operation)
        if error is not None:
            raise _logged(operation, error)
        payload = json_object(response)
        code = normalise_code(payload.get("ResponseCode")) if payload is not None else ""
        if payload is None or not code:
            raise _logged(operation, _unreadable(operation, "unreadable answer"))
        if code != "0":
            description = _text(payload, "ResponseDescription") or f"ResponseCode {code}"
            raise _logged(operation, DarajaRejected(description, error_code=code, http_status=200))
        return payload

    async def _send(
        self, operation: str, url: str, body: dict[str, object], token: str
    ) -> httpx.Response:
        try:
            return await self._http.post(
                url, json=body, headers={"Authorization": f"Bearer {token}"}
            )
        except _NOT_SENT as exc:
            error: DarajaError = DarajaUnavailable(f"could not reach Daraja ({type(exc).__name__})")
            raise _logged(operation, error) from exc
        except httpx.TransportError as exc:
            # The request may have been processed; resending a push could prompt twice.
            error = DarajaTimeout(f"no answer from Daraja ({type(exc).__name__}), outcome unknown")
            raise _logged(operation, error) from exc


def _refusal(response: httpx.Response, operation: Literal["push", "query"]) -> DarajaError | None:
    return (
        None if response.status_code == 200 else error_from_response(response, operation=operation)
    )


def _unreadable(operation: str, message: str) -> DarajaError:
    # A 200 means Daraja accepted something; for a push we cannot tell whether the prompt
    # went out, so it is reported like a timeout: outcome unknown, never resent.
    if operation == "push":
        return DarajaTimeout(f"{message} (HTTP 200), outcome unknown", http_status=200)
    return DarajaUnavailable(message, http_status=200)


def _logged(operation: str, error: DarajaError) -> DarajaError:
    logger.warning(
        "daraja %s failed: %s %r error_code=%s http_status=%s request_id=%s",
        operation,
        type(error).__name__,
        error.message,
        error.error_code,
        error.http_status,
        error.request_id,
    )
    return error


def _text(payload: dict[str, object], key: str) -> str:
    value = payload.get(key)
    return "" if value is None else str(value)


def _expires_in(value: object) -> float:
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except ValueError:
            return DEFAULT_EXPIRES_IN
        if math.isfinite(seconds) and seconds > 0:
            return seconds
    return DEFAULT_EXPIRES_IN


def _check_push_arguments(
    phone_number: str, amount: int, account_reference: str, transaction_desc: str
) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValueError(f"amount must be whole shillings (int), got {type(amount).__name__}")
    if not wire.AMOUNT_MIN <= amount <= wire.AMOUNT_MAX:
        raise ValueError(f"amount must be {wire.AMOUNT_MIN} to {wire.AMOUNT_MAX}, got {amount}")
    if not is_msisdn(phone_number):
        raise ValueError("phone_number must be a normalised MSISDN, 2547XXXXXXXX or 2541XXXXXXXX")
    if not (
        account_reference.isascii()
        and account_reference.isalnum()
        and len(account_reference) <= wire.ACCOUNT_REFERENCE_MAX
    ):
        raise ValueError(
            f"account_reference must be 1 to {wire.ACCOUNT_REFERENCE_MAX} letters or digits"
        )
    if not transaction_desc.strip() or len(transaction_desc) > wire.TRANSACTION_DESC_MAX:
        raise ValueError(f"transaction_desc must be 1 to {wire.TRANSACTION_DESC_MAX} characters")
