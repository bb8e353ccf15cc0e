"""Purchase, payment status and Daraja callback bodies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from movietickets.db.models import PaymentStatus as TicketStatus
from movietickets.phone import normalize_msisdn
from movietickets.schemas.types import StrictInt

CustomerName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)
]
CheckoutRequestId = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)
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


class CallbackItem(BaseModel):
    Name: str
    Value: Any = None


class StkCallbackMetadata(BaseModel):
    Item: list[CallbackItem] = Field(default_factory=list)


class StkCallback(BaseModel):
    MerchantRequestID: str | None = None
    CheckoutRequestID: CheckoutRequestId
    ResultCode: int | str
    ResultDesc: str = ""
    CallbackMetadata: StkCallbackMetadata | None = None

    @field_validator("ResultCode")
    @classmethod
    def _code_as_text(cls, value: int | str) -> str:
        text = str(value).strip()
        if not text or len(text) > 32:
            raise ValueError("ResultCode must be a short code")
        return text

    def item(self, name: str) -> Any:
        """An item's Value by Name (never by position); None when absent or without a value."""
        if self.CallbackMetadata is None:
            return None
        for item in self.CallbackMetadata.Item:
            if item.Name == name:
                return item.Value
        return None


class CallbackBody(BaseModel):
    stkCallback: StkCallback


class DarajaCallback(BaseModel):
    """The body Safaricom POSTs to the CallBackURL."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "Body": {
                        "stkCallback": {
                            "MerchantRequestID": "29115-34620561-1",
                            "CheckoutRequestID": "ws_CO_191220191020363925",
                            "ResultCode": 0,
                            "ResultDesc": "The service request is processed successfully.",
                            "CallbackMetadata": {
                                "Item": [
                                    {"Name": "Amount", "Value": 1.00},
                                    {"Name": "MpesaReceiptNumber", "Value": "NLJ7RT61SV"},
                                    {"Name": "Balance"},
                                    {"Name": "TransactionDate", "Value": 20191219102115},
                                    {"Name": "PhoneNumber", "Value": 254708374149},
                                ]
                            },
                        }
                    }
                }
            ]
        }
    )

    Body: CallbackBody


class CallbackAck(BaseModel):
    ResultCode: int = 0
    ResultDesc: str = "Accepted"
