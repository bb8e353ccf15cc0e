"""Every domain error, and the one JSON error shape every failure is answered with.

Services raise these; the handlers installed by `install_exception_handlers` turn them (and
framework errors) into `{"error": <message>, "code": <machine code>, ...}`. Nothing else
builds error bodies or writes `Retry-After`: an error carries `retry_after`, and this module
turns it into the header.

    AppError                     400 bad_request
    ├── MalformedCallback        400 malformed_callback (not a Daraja STK callback body)
    ├── InvalidInput             422 validation_error (a rule on a well-typed value)
    ├── IdempotencyKeyReused     422 idempotency_key_reused (same key, another body)
    ├── NotFound                 404 not_found
    ├── Conflict                 409 conflict
    │   ├── SoldOut              409 sold_out (carries seatsAvailable)
    │   └── IdempotencyKeyInUse  409 idempotency_key_in_use (the first request still runs)
    ├── Unauthorized             401 unauthorized (missing, expired or tampered admin token)
    │   └── StaleCredentials     401 unauthorized (expired, or its admin was deleted)
    ├── Forbidden                403 forbidden
    ├── PaymentProviderError     502 payment_provider_error (names the ticket)
    │   ├── PaymentProviderBusy          503 payment_provider_busy
    │   └── PaymentOutcomeUnknown        504 payment_outcome_unknown
    ├── RateLimited              429 rate_limited (with Retry-After)
    └── ServiceUnavailable       503 service_unavailable
        └── PaymentNotRecorded   503 payment_not_recorded (the push went out, names the
                                 ticket and its checkoutRequestId; do not pay again)

Framework errors: 400 malformed_json, 404 not_found (no route), 405 method_not_allowed,
413 payload_too_large, 422 validation_error, 503 database_down, 500 internal_error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from movietickets.db.engine import DATABASE_UNAVAILABLE

logger = logging.getLogger(__name__)


class ErrorDetail(BaseModel):
    field: str = Field(description="Where the problem is, e.g. `body.price` or `path.id`.")
    message: str


class ErrorBody(BaseModel):
    """The body of every 4xx and 5xx answer."""

    error: str = Field(description="What went wrong, for people.")
    code: str = Field(description="What went wrong, for programs; stable.")
    details: list[ErrorDetail] | None = Field(
        default=None, description="One entry per invalid field."
    )
    ticketId: int | None = Field(default=None, description="The ticket the error is about.")
    checkoutRequestId: str | None = Field(
        default=None, description="M-Pesa's id of the payment request already sent."
    )
    seatsAvailable: int | None = Field(default=None, description="Seats left (sold out).")

    model_config = {
        "json_schema_extra": {
            "examples": [{"error": "Movie 42 not found", "code": "not_found"}],
        }
    }


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


class PaymentNotRecorded(ServiceUnavailable):
    """M-Pesa accepted the push (the prompt is on the phone), but it could not be stored."""

    code = "payment_not_recorded"


class RateLimited(AppError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)


def error_response(
    status_code: int, body: ErrorBody, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        body.model_dump(exclude_none=True), status_code=status_code, headers=headers
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


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting the error shape for each status."""
    descriptions = {
        400: "Malformed request (e.g. the body is not JSON)",
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
    return {s: {"model": ErrorBody, "description": descriptions[s]} for s in statuses}


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str = "Sign in as an admin: Authorization: Bearer <token>") -> None:
        super().__init__(message)

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class StaleCredentials(Unauthorized):
    """A token that was valid once: expired, or its admin account was deleted since."""
