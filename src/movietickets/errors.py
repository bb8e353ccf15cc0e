"""Every domain error, and the one JSON error shape every failure is answered with.

Services raise these; the handlers installed by `install_exception_handlers` turn them (and
framework errors) into `{"error": <message>, "code": <machine code>, ...}`. Nothing else in
the app builds error bodies or writes `Retry-After`: an error carries `retry_after`, and this
module turns it into the header. (The HTTP server's own refusals, sent before a request reaches
the app, are written by `server.py` in the same shape.)

    AppError                     400 bad_request
    ├── MalformedCallback        400 malformed_callback (not a Daraja STK callback body)
    ├── InvalidInput             422 validation_error (a rule on a well-typed value)
    ├── IdempotencyKeyReused     422 idempotency_key_reused (same key, another body)
    ├── NotFound                 404 not_found
    ├── Conflict                 409 conflict
    │   ├── SoldOut              409 sold_out (carries seatsAvailable)
    │   ├── TooManySeatsHeld     409 too_many_seats_held (a phone's or address's bound)
    │   └── IdempotencyKeyInUse  409 idempotency_key_in_use (the first request still runs)
    ├── Unauthorized             401 unauthorized (missing, expired or tampered admin token)
    │   └── StaleCredentials     401 unauthorized (expired, or its admin was deleted)
    ├── Forbidden                403 forbidden
    ├── PaymentProviderError     502 payment_provider_error (names the ticket)
    │   ├── PaymentProviderBusy          503 payment_provider_busy
    │   └── PaymentOutcomeUnknown        504 payment_outcome_unknown
    ├── RateLimited              429 rate_limited (with Retry-After)
    └── ServiceUnavailable       503 service_unavailable

Framework errors: 400 malformed_json, 404 not_found (no route), 405 method_not_allowed,
413 payload_too_large, 422 validation_error, 503 database_down, 500 internal_error.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from movietickets.db.engine import DATABASE_UNAVAILABLE

logger = logging.getLogger(__name__)


class ErrorCode(StrEnum):
    """What went wrong, for programs: every `code` the service sends, and no other.

    400 `malformed_json` (the body is not JSON), `malformed_callback` (not a Daraja callback),
    `bad_request`; 401 `unauthorized`; 403 `forbidden`; 404 `not_found`; 405
    `method_not_allowed`; 409 `conflict`, `sold_out` (with `seatsAvailable`),
    `idempotency_key_in_use` (with `Retry-After`), `too_many_seats_held`; 413
    `payload_too_large`; 415 `unsupported_media_type`; 422 `validation_error` (with
    `details`), `idempotency_key_reused`;
    429 `rate_limited` (with `Retry-After`); 500 `internal_error`; 502 `payment_provider_error`;
    503 `payment_provider_busy`, `database_down` (both with `Retry-After`),
    `service_unavailable`; 504 `payment_outcome_unknown`; any other status `http_error`.
    The HTTP server itself (`server.py`) answers 408 `request_timeout`, 431
    `headers_too_large` and 503 `server_busy` before a request reaches the app.
    """

    BAD_REQUEST = "bad_request"
    MALFORMED_JSON = "malformed_json"
    MALFORMED_CALLBACK = "malformed_callback"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    SOLD_OUT = "sold_out"
    TOO_MANY_SEATS_HELD = "too_many_seats_held"
    IDEMPOTENCY_KEY_IN_USE = "idempotency_key_in_use"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    VALIDATION_ERROR = "validation_error"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    RATE_LIMITED = "rate_limited"
    INTERNAL_ERROR = "internal_error"
    PAYMENT_PROVIDER_ERROR = "payment_provider_error"
    PAYMENT_PROVIDER_BUSY = "payment_provider_busy"
    DATABASE_DOWN = "database_down"
    SERVICE_UNAVAILABLE = "service_unavailable"
    PAYMENT_OUTCOME_UNKNOWN = "payment_outcome_unknown"
    HTTP_ERROR = "http_error"
    REQUEST_TIMEOUT = "request_timeout"
    HEADERS_TOO_LARGE = "headers_too_large"
    SERVER_BUSY = "server_busy"


class ErrorDetail(BaseModel):
    field: str = Field(description="Where the problem is, e.g. `body.price` or `path.id`.")
    message: str


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer."""

    error: str = Field(description="What went wrong, for people.")
    code: ErrorCode = Field(description="What went wrong, for programs; stable.")
    details: list[ErrorDetail] | None = Field(
        default=None, description="One entry per invalid field."
    )
    ticketId: int | None = Field(default=None, description="The ticket the error is about.")
    seatsAvailable: int | None = Field(default=None, description="Seats left (sold out).")


class AppError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        details: list[ErrorDetail] | None = None,
        retry_after: float | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.retry_after = retry_after  # seconds; answered as the Retry-After header
        self.extra = extra

    def body(self) -> ErrorBody:
        return ErrorBody(error=self.message, code=self.code, details=self.details, **self.extra)

    def headers(self) -> dict[str, str] | None:
        if self.retry_after is None:
            return None
        return {"Retry-After": str(max(1, int(self.retry_after)))}


class MalformedCallback(AppError):
    status_code = 400
    code = "malformed_callback"


class InvalidInput(AppError):
    status_code = 422
    code = "validation_error"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(
            f"Invalid request: {field}: {message}",
            details=[ErrorDetail(field=field, message=message)],
        )


class IdempotencyKeyReused(AppError):
    status_code = 422
    code = "idempotency_key_reused"


class NotFound(AppError):
    status_code = 404
    code = "not_found"


class Conflict(AppError):
    status_code = 409
    code = "conflict"


class SoldOut(Conflict):
    code = "sold_out"


class TooManySeatsHeld(Conflict):
    """The phone number or client address already holds as many unpaid seats as it may."""

    code = "too_many_seats_held"


class IdempotencyKeyInUse(Conflict):
    code = "idempotency_key_in_use"


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


class PaymentProviderError(AppError):
    status_code = 502
    code = "payment_provider_error"


class PaymentProviderBusy(PaymentProviderError):
    status_code = 503
    code = "payment_provider_busy"


class PaymentOutcomeUnknown(PaymentProviderError):
    status_code = 504
    code = "payment_outcome_unknown"


class ServiceUnavailable(AppError):
    status_code = 503
    code = "service_unavailable"


class RateLimited(AppError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)


def error_response(
    status_code: int, body: ErrorBody, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        body.model_dump(mode="json", exclude_none=True), status_code=status_code, headers=headers
    )


def app_error_response(exc: AppError) -> JSONResponse:
    """The answer to a domain error, for code outside the exception handlers (middleware)."""
    return error_response(exc.status_code, exc.body(), exc.headers())


def _location(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "body"


async def _app_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return app_error_response(exc)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        return error_response(
            400, ErrorBody(error="Request body is not valid JSON", code="malformed_json")
        )
    details = [
        ErrorDetail(field=_location(tuple(error.get("loc", ()))), message=_message(error))
        for error in errors
    ]
    summary = "; ".join(f"{d.field}: {d.message}" for d in details)
    return error_response(
        422,
        ErrorBody(error=f"Invalid request: {summary}", code="validation_error", details=details),
    )


def _message(error: dict[str, Any]) -> str:
    message = str(error.get("msg", "invalid value"))
    # Pydantic prefixes messages of custom validators; the prefix says nothing to a client.
    return message.removeprefix("Value error, ")


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404 and exc.detail == "Not Found":
        message = f"No route {request.method} {request.url.path}"
    else:
        message = str(exc.detail)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return error_response(exc.status_code, ErrorBody(error=message, code=code), exc.headers)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    logger.error("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return error_response(
        503,
        ErrorBody(error="The database is unavailable; try again shortly", code="database_down"),
        {"Retry-After": "5"},
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, ErrorBody(error="Internal server error", code="internal_error"))


def install_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for database_error in DATABASE_UNAVAILABLE:
        app.add_exception_handler(database_error, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected)


# The headers of answers, as the OpenAPI document declares them (components/headers).
RESPONSE_HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The request's id, on every answer and every log line of the request: "
        "the client's own `X-Request-ID` when it sent a valid one, else a new one.",
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "WWW-Authenticate": {
        "description": "`Bearer`: sign in with `POST /api/auth/token`.",
        "schema": {"type": "string"},
    },
    "Idempotent-Replayed": {
        "description": "`true` when this is the stored answer to an earlier request with the "
        "same `Idempotency-Key` (no second M-Pesa prompt was sent).",
        "schema": {"type": "string", "enum": ["true"]},
    },
}

# The headers an error answer always carries, by its code.
CODE_HEADERS: dict[ErrorCode, tuple[str, ...]] = {
    ErrorCode.UNAUTHORIZED: ("WWW-Authenticate",),
    ErrorCode.IDEMPOTENCY_KEY_IN_USE: ("Retry-After",),
    ErrorCode.RATE_LIMITED: ("Retry-After",),
    ErrorCode.PAYMENT_PROVIDER_BUSY: ("Retry-After",),
    ErrorCode.DATABASE_DOWN: ("Retry-After",),
}

# An example answer: a summary, and the body.
ErrorExample = tuple[str, ErrorBody]
ErrorExamples = Mapping[int, Sequence[ErrorExample]]


def _invalid(field: str, message: str) -> ErrorBody:
    return InvalidInput(field, message).body()


_BAD_PRICE: ErrorExample = (
    "An invalid field",
    _invalid("body.price", "must be a whole number of shillings (M-Pesa has no cents)"),
)


@functools.cache
def default_examples() -> dict[int, list[ErrorExample]]:
    """One realistic example per status, unless a route gives its own (`examples=`)."""
    return {
        400: [
            (
                "The body is not JSON",
                ErrorBody(error="Request body is not valid JSON", code=ErrorCode.MALFORMED_JSON),
            )
        ],
        401: [
            ("No admin token", Unauthorized().body()),
            (
                "Expired admin token",
                Unauthorized("The admin token has expired; sign in again").body(),
            ),
        ],
        403: [("Wrong callback secret or source address", Forbidden("Callback refused").body())],
        404: [("No such movie", NotFound("Movie 42 not found").body())],
        413: [
            (
                "Body over 64 KiB",
                ErrorBody(
                    error="Request body larger than 65536 bytes", code=ErrorCode.PAYLOAD_TOO_LARGE
                ),
            )
        ],
        422: [_BAD_PRICE],
        429: [
            (
                "Too many writes from one address",
                RateLimited(
                    "Too many requests from your address (at most 20/minute); try again in 12 s",
                    retry_after=12,
                ).body(),
            )
        ],
        502: [
            (
                "M-Pesa refused the request",
                PaymentProviderError(
                    "M-Pesa refused the payment request; ticket 7 was cancelled", ticketId=7
                ).body(),
            )
        ],
        503: [
            (
                "The database is unreachable",
                ErrorBody(
                    error="The database is unavailable; try again shortly",
                    code=ErrorCode.DATABASE_DOWN,
                ),
            )
        ],
        504: [
            (
                "M-Pesa did not answer in time",
                PaymentOutcomeUnknown(
                    "M-Pesa did not answer in time; ticket 7 stays Pending until the payment is "
                    "confirmed or refused",
                    ticketId=7,
                ).body(),
            )
        ],
    }


_DESCRIPTIONS = {
    400: "Malformed request",
    401: "Missing or invalid credentials",
    403: "Not allowed",
    404: "Not found",
    409: "Conflicts with the current state",
    413: "Request body too large",
    422: "A field is missing or invalid",
    429: "Too many requests",
    502: "The payment provider refused or failed",
    503: "A dependency is unavailable; retry later",
    504: "The payment provider did not answer in time",
}

_DATABASE_DOWN: ErrorExample = (
    "The database is unreachable",
    ErrorBody(error="The database is unavailable; try again shortly", code=ErrorCode.DATABASE_DOWN),
)
_PER_ADDRESS: ErrorExample = (
    "Too many writes from one address",
    ErrorBody(
        error="Too many requests from your address (at most 20/minute); try again in 12 s",
        code=ErrorCode.RATE_LIMITED,
    ),
)

_BAD_ID: ErrorExample = (
    "Not a valid id",
    ErrorBody(
        error="Invalid request: path.id: Input should be greater than or equal to 1",
        code=ErrorCode.VALIDATION_ERROR,
        details=[
            ErrorDetail(field="path.id", message="Input should be greater than or equal to 1")
        ],
    ),
)

# The examples of routes whose errors differ from the defaults.
MOVIE_EXAMPLES: ErrorExamples = {422: [_BAD_ID]}
UPDATE_MOVIE_EXAMPLES: ErrorExamples = {
    422: [_BAD_ID, _BAD_PRICE],
    409: [
        (
            "Fewer seats than are sold or held",
            Conflict(
                "max_tickets cannot go below the 120 seats already sold or held",
                seatsAvailable=30,
            ).body(),
        )
    ],
}
DELETE_MOVIE_EXAMPLES: ErrorExamples = {
    422: [_BAD_ID],
    409: [
        (
            "The movie has tickets",
            Conflict(
                "Movie 1 has 3 paid, pending, unconfirmed or refund-due tickets; it cannot be "
                "deleted"
            ).body(),
        )
    ],
}
MAKE_PAYMENT_EXAMPLES: ErrorExamples = {
    409: [
        ("Sold out", SoldOut("Only 3 seats left for movie 1", seatsAvailable=3).body()),
        (
            "The showing has started",
            Conflict("Movie 1 has already started; tickets are closed").body(),
        ),
        (
            "The first request with this Idempotency-Key is still running",
            ErrorBody(
                error="A request with this Idempotency-Key is still being processed",
                code=ErrorCode.IDEMPOTENCY_KEY_IN_USE,
            ),
        ),
        (
            "This phone number holds too many unpaid seats",
            TooManySeatsHeld(
                "This phone number already holds 20 unpaid seats for movie 1, and may hold at "
                "most 20 at once; pay for them first, or wait until they are released"
            ).body(),
        ),
    ],
    422: [
        (
            "Not a Kenyan mobile number",
            _invalid(
                "body.phoneNumber", "phone number must be a Kenyan mobile number, e.g. 0712345678"
            ),
        ),
        ("Too many tickets", _invalid("body.quantity", "at most 10 tickets per order")),
        (
            "The Idempotency-Key was used with another body",
            ErrorBody(
                error="This Idempotency-Key was used with a different request body",
                code=ErrorCode.IDEMPOTENCY_KEY_REUSED,
            ),
        ),
    ],
    429: [
        (
            "The same payment again within 2 minutes",
            RateLimited(
                "A payment of this amount to this phone number was requested moments ago, and "
                "M-Pesa refuses a repeat within 2 minutes; try again in 95 s",
                retry_after=95,
            ).body(),
        ),
        _PER_ADDRESS,
    ],
    503: [
        (
            "M-Pesa is busy",
            PaymentProviderBusy(
                "M-Pesa is busy; ticket 7 was cancelled, try again shortly", ticketId=7
            ).body(),
        ),
        _DATABASE_DOWN,
    ],
}
QUERY_PAYMENT_STATUS_EXAMPLES: ErrorExamples = {
    404: [
        (
            "Unknown CheckoutRequestID",
            NotFound("No payment with CheckoutRequestID ws_CO_DMZ_12345678901234567").body(),
        )
    ],
    502: [
        (
            "M-Pesa failed",
            PaymentProviderError("M-Pesa could not answer the status query", ticketId=7).body(),
        )
    ],
    503: [
        (
            "M-Pesa is busy",
            PaymentProviderBusy("M-Pesa is busy; query again shortly", ticketId=7).body(),
        ),
        _DATABASE_DOWN,
    ],
    504: [
        (
            "M-Pesa did not answer in time",
            PaymentOutcomeUnknown(
                "M-Pesa did not answer the status query in time", ticketId=7
            ).body(),
        )
    ],
}
CALLBACK_EXAMPLES: ErrorExamples = {
    400: [
        (
            "Not a Daraja STK callback",
            ErrorBody(error="Not a Daraja STK callback body", code=ErrorCode.MALFORMED_CALLBACK),
        )
    ],
    422: [
        (
            "A token longer than 256 characters",
            _invalid("query.token", "String should have at most 256 characters"),
        )
    ],
}
TICKET_EXAMPLES: ErrorExamples = {
    401: [
        (
            "A forged or malformed admin token",
            ErrorBody(error="The admin token is invalid", code=ErrorCode.UNAUTHORIZED),
        )
    ],
    404: [("No such ticket", NotFound("Ticket 42 not found").body())],
    422: [_BAD_ID],
}
SIGN_IN_EXAMPLES: ErrorExamples = {
    401: [
        (
            "Wrong username or password",
            ErrorBody(error="Wrong username or password", code=ErrorCode.UNAUTHORIZED),
        )
    ],
    422: [("No username", _invalid("body.username", "Field required"))],
}
REPORT_EXAMPLES: ErrorExamples = {
    422: [
        (
            "Not a time",
            _invalid(
                "query.from", "must be an ISO 8601 date and time, e.g. 2025-07-15T20:00:00.000Z"
            ),
        )
    ],
}
READINESS_EXAMPLES: ErrorExamples = {
    503: [
        (
            "The database is unreachable",
            ServiceUnavailable("The database is not reachable").body(),
        )
    ],
}

# Statuses whose answer make-payment stores for its Idempotency-Key and replays.
REPLAYED_STATUSES = (200, 502, 503, 504)


def header_ref(name: str) -> dict[str, str]:
    assert name in RESPONSE_HEADERS, name
    return {"$ref": f"#/components/headers/{name}"}


def _example_key(code: str, taken: Mapping[str, Any]) -> str:
    key, n = code, 1
    while key in taken:
        n += 1
        key = f"{code}_{n}"
    return key


def error_responses(
    *statuses: int, examples: ErrorExamples | None = None, idempotent: bool = False
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries: the error shape, examples and headers for each status.

    `examples` replaces the default examples of a status with the route's own. The headers
    follow from the examples' codes (`CODE_HEADERS`). `idempotent`: the route replays stored
    answers (200 and the errors that name a ticket) with `Idempotent-Replayed`.
    """
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        shown = (examples or {}).get(status) or default_examples().get(status)
        if not shown:
            raise ValueError(f"status {status} has no default example: pass examples=")
        named: dict[str, Any] = {}
        headers: dict[str, Any] = {}
        for summary, body in shown:
            named[_example_key(body.code, named)] = {
                "summary": summary,
                "value": body.model_dump(mode="json", exclude_none=True),
            }
            for name in CODE_HEADERS.get(body.code, ()):
                headers[name] = header_ref(name)
        if idempotent and status in REPLAYED_STATUSES:
            headers["Idempotent-Replayed"] = header_ref("Idempotent-Replayed")
        codes = ", ".join(dict.fromkeys(f"`{body.code}`" for _, body in shown))
        response: dict[str, Any] = {
            "model": ErrorBody,
            "description": f"{_DESCRIPTIONS[status]}: {codes}",
            "content": {"application/json": {"examples": named}},
        }
        if headers:
            response["headers"] = headers
        responses[status] = response
    if idempotent:
        responses[200] = {"headers": {"Idempotent-Replayed": header_ref("Idempotent-Replayed")}}
    return responses


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str = "Sign in as an admin: Authorization: Bearer <token>") -> None:
        super().__init__(message)

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class StaleCredentials(Unauthorized):
    """A token that was valid once: expired, or its admin account was deleted since."""
