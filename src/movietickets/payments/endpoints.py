"""M-Pesa payments: make-payment, query-payment-status and Safaricom's callback."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response

from movietickets.daraja.callback import CallbackAck
from movietickets.errors import (
    CALLBACK_EXAMPLES,
    MAKE_PAYMENT_EXAMPLES,
    QUERY_PAYMENT_STATUS_EXAMPLES,
    error_responses,
)
from movietickets.payments.dependencies import (
    CallbackServiceDep,
    IdempotencyServiceDep,
    PaymentStatusServiceDep,
    PurchaseServiceDep,
)
from movietickets.payments.idempotency import StoredResponse
from movietickets.payments.schemas import (
    PaymentInitiated,
    PaymentRequest,
    PaymentStatusRequest,
    PaymentStatusResult,
)

router = APIRouter(prefix="/api", tags=["payments"])


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Any unique string (a UUID): a retry with the same key and body replays the "
        "first answer instead of sending a second M-Pesa prompt, even when the first request "
        "never answered (a crash): the key's ticket is found and answered from. Kept 24 hours.",
    ),
]


@router.post(
    "/make-payment",
    response_model=PaymentInitiated,
    operation_id="makePayment",
    summary="Hold seats and send an M-Pesa STK Push to the customer's phone",
    description="Creates a Pending ticket holding the seats, then asks M-Pesa to prompt the "
    "customer. The ticket becomes Paid or Failed when M-Pesa reports the result (see "
    "`GET /api/tickets/{id}`). 502/503/504 errors name the ticket in `ticketId`. Send an "
    "`Idempotency-Key` header to make retries safe. The same phone number, movie and quantity "
    "again within 2 minutes (M-Pesa refuses the same amount to the same phone) gets 429 with "
    "`Retry-After`. One phone number, and one client address, may hold only so many unpaid "
    "seats of a showing at once: over that, 409 `too_many_seats_held`.",
    responses=error_responses(
        400, 404, 409, 413, 422, 429, 502, 503, 504, examples=MAKE_PAYMENT_EXAMPLES, idempotent=True
    ),
)
async def make_payment(
    request: Request,
    order: PaymentRequest,
    service: PurchaseServiceDep,
    idempotency: IdempotencyServiceDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> PaymentInitiated | Response:
    # The client's address, our trusted proxies' X-Forwarded-For read (ClientAddressMiddleware).
    purchase = order.to_order(request.client.host if request.client else None, idempotency_key)
    if idempotency_key is None:
        return await service.make_payment(purchase)
    result = await idempotency.run(
        idempotency_key,
        order,
        lambda attempt: service.make_payment(purchase, access_token=attempt.access_token),
    )
    if isinstance(result, StoredResponse):
        return Response(
            result.body,
            status_code=result.status_code,
            media_type="application/json",
            headers={"Idempotent-Replayed": "true"},
        )
    return result


@router.post(
    "/query-payment-status",
    operation_id="queryPaymentStatus",
    summary="Ask M-Pesa about a payment and apply its answer",
    description="Answers from the database once M-Pesa's final result is known. While the "
    "customer has not answered, `ResultCode` is null and `paymentStatus` is Pending.",
    responses=error_responses(
        400, 404, 422, 429, 502, 503, 504, examples=QUERY_PAYMENT_STATUS_EXAMPLES
    ),
)
async def query_payment_status(
    body: PaymentStatusRequest, service: PaymentStatusServiceDep
) -> PaymentStatusResult:
    return await service.query(body.checkoutRequestId)


CALLBACK_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/DarajaCallback"}}
        },
    }
}


async def _callback(
    request: Request, service: CallbackServiceDep, token: str | None
) -> CallbackAck:
    source_ip = request.client.host if request.client else None
    await service.receive(await request.body(), token=token, source_ip=source_ip)
    return CallbackAck()


TokenQuery = Annotated[
    str | None, Query(description="The callback secret, when one is configured.", max_length=256)
]


@router.post(
    "/payment-callback",
    operation_id="receivePaymentCallback",
    summary="Daraja's STK callback (the URL to give Safaricom)",
    description="Safaricom posts the payment result here. Every well-formed body is answered "
    '`{"ResultCode": 0, "ResultDesc": "Accepted"}`. A callback without the right secret is '
    "refused (403); too many of those from one address get 429. The path avoids the words "
    "Daraja is reported to refuse in a CallBackURL (mpesa, safaricom, query, ...).",
    responses=error_responses(400, 403, 413, 422, 429, examples=CALLBACK_EXAMPLES),
    openapi_extra=CALLBACK_DOC,
)
async def payment_callback(
    request: Request, service: CallbackServiceDep, token: TokenQuery = None
) -> CallbackAck:
    return await _callback(request, service, token)


@router.post(
    "/mpesa-callback",
    operation_id="receiveMpesaCallback",
    summary="Daraja's STK callback (the original API's path)",
    responses=error_responses(400, 403, 413, 422, 429, examples=CALLBACK_EXAMPLES),
    openapi_extra=CALLBACK_DOC,
)
async def mpesa_callback(
    request: Request, service: CallbackServiceDep, token: TokenQuery = None
) -> CallbackAck:
    return await _callback(request, service, token)
