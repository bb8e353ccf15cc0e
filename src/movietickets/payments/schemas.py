"""make-payment and query-payment-status bodies, spelled as the original API spells them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from movietickets.daraja.callback import CheckoutRequestId
from movietickets.db.models import PaymentStatus as TicketStatus
from movietickets.kit.net import client_key
from movietickets.kit.phone import normalize_msisdn
from movietickets.kit.types import StrictInt
from movietickets.payments.seat_holds import Order

CustomerName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)
]


class PaymentRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "movieId": 1,
                    "customerName": "John Doe",
                    "phoneNumber": "0712345678",
                    "quantity": 2,
                }
            ]
        }
    )

    movieId: Annotated[StrictInt, Field(ge=1, le=2_147_483_647)]
    customerName: CustomerName
    phoneNumber: str = Field(
        max_length=32,
        description="A Kenyan mobile number in any usual form: 0712345678, +254 712 345 678, "
        "254112345678, 712345678. Stored as 254XXXXXXXXX.",
    )
    quantity: Annotated[StrictInt, Field(ge=1, le=1000)]

    @field_validator("phoneNumber")
    @classmethod
    def _kenyan_mobile(cls, value: str) -> str:
        return normalize_msisdn(value)

    def to_order(self, client_host: str | None = None, idempotency_key: str | None = None) -> Order:
        """The order as the payment services take it (the HTTP body stops here), from the
        client at `client_host` (the request's client address), sent with `idempotency_key`."""
        return Order(
            movie_id=self.movieId,
            customer_name=self.customerName,
            phone_number=self.phoneNumber,
            quantity=self.quantity,
            client_address=client_key(client_host),
            idempotency_key=idempotency_key,
        )


class PaymentInitiated(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "message": "Payment initiated successfully",
                    "ticketId": 1,
                    "checkoutRequestId": "ws_CO_DMZ_12345678901234567",
                    "responseDescription": "Success. Request accepted for processing",
                    "paymentStatus": "Pending",
                    "ticketAccessToken": "kQ3vX9...",
                }
            ]
        }
    )

    message: Literal["Payment initiated successfully"] = "Payment initiated successfully"
    ticketId: int
    checkoutRequestId: str
    responseDescription: str
    paymentStatus: TicketStatus = TicketStatus.PENDING
    ticketAccessToken: str = Field(
        description="Keep it secret: it shows the buyer's name and phone number on "
        "`GET /api/tickets/{id}` (header `X-Ticket-Token`). It is not stored and cannot be "
        "recovered."
    )


class PaymentStatusRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"checkoutRequestId": "ws_CO_DMZ_12345678901234567"}]}
    )

    checkoutRequestId: CheckoutRequestId


class PaymentStatusResult(BaseModel):
    """Daraja's STK Query fields, plus the ticket's state after the answer was applied."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ResponseCode": "0",
                    "ResponseDescription": "The service request has been accepted successfully",
                    "MerchantRequestID": "12345-67890-1",
                    "CheckoutRequestID": "ws_CO_DMZ_12345678901234567",
                    "ResultCode": "0",
                    "ResultDesc": "The service request is processed successfully",
                    "ticketId": 1,
                    "paymentStatus": "Paid",
                }
            ]
        }
    )

    ResponseCode: str
    ResponseDescription: str
    MerchantRequestID: str | None
    CheckoutRequestID: str
    ResultCode: str | None = Field(description="Null while the customer has not answered yet.")
    ResultDesc: str | None
    ticketId: int
    paymentStatus: TicketStatus
