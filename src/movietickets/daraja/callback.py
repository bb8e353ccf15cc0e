"""Daraja's STK callback as it arrives: the body Safaricom posts, its parsing into a
`PaymentResult`, and the answer Daraja expects.

The same `PaymentResult` comes out of an STK Query, so settlement never sees Daraja's wire
format.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from movietickets.daraja.wire import NAIROBI, result_code
from movietickets.kit.types import FIRST_YEAR, LAST_YEAR

SUCCESS = "0"

CheckoutRequestId = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)
]


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

    @field_validator("ResultCode", mode="before")
    @classmethod
    def _code_as_text(cls, value: object) -> str:
        # Before pydantic's own coercion, which would turn `false` and `0.0` into 0 (success):
        # a body whose ResultCode is not an integer or a plain string is malformed (400, stored,
        # never applied; the reconciler asks Daraja instead).
        code = result_code(value)
        if code is None:
            raise ValueError("ResultCode must be an integer or a short code string")
        return code

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


@dataclass(frozen=True, slots=True)
class PaymentResult:
    """What M-Pesa said about one push, from a callback or an STK query."""

    result_code: str
    result_desc: str
    receipt_number: str | None = None
    transaction_date: datetime | None = None
    # Shillings reported paid; None when the source does not say (STK query).
    amount: Decimal | None = None

    @property
    def succeeded(self) -> bool:
        return self.result_code == SUCCESS


def payment_result(callback: StkCallback) -> PaymentResult:
    return PaymentResult(
        result_code=str(callback.ResultCode),
        result_desc=callback.ResultDesc,
        receipt_number=metadata_text(callback.item("MpesaReceiptNumber")),
        transaction_date=_transaction_date(callback.item("TransactionDate")),
        amount=_amount(callback.item("Amount")),
    )


def metadata_text(value: Any) -> str | None:
    """A metadata item's value as text without surrounding blanks (at most 32 characters),
    None when empty."""
    text = str(value).strip()[:32] if value is not None else ""
    return text or None


def _amount(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _transaction_date(value: Any) -> datetime | None:
    """`20191219102115` (a number, Kenyan time) as an aware datetime; None if unreadable.

    Only in the years every time of the service lies in: year 1 would overflow on its way to
    UTC, and the payment matters more than its date.
    """
    try:
        local = datetime.strptime(str(value), "%Y%m%d%H%M%S")  # noqa: DTZ007 (zone set below)
    except (TypeError, ValueError):
        return None
    if not FIRST_YEAR <= local.year <= LAST_YEAR:
        return None
    return local.replace(tzinfo=NAIROBI)
