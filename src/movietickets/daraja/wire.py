"""Pieces of the Daraja wire format shared by the client and the simulator."""

from __future__ import annotations

import base64
import re
from datetime import datetime

# Daraja writes its timestamps in Kenyan time.
from movietickets.kit.clock import NAIROBI as NAIROBI

OAUTH_PATH = "/oauth/v1/generate"
STK_PUSH_PATH = "/mpesa/stkpush/v1/processrequest"
STK_QUERY_PATH = "/mpesa/stkpushquery/v1/query"

PAYBILL = "CustomerPayBillOnline"
TILL = "CustomerBuyGoodsOnline"

# Safaricom's public sandbox shortcode and passkey (published in the Daraja docs).
SANDBOX_SHORTCODE = "174379"
SANDBOX_PASSKEY = "bfb279f9aa9bdbcf158e97dd71a467cd2e0c893059b10f78e6b72ada1ed2c919"

ACCOUNT_REFERENCE_MAX = 12
TRANSACTION_DESC_MAX = 13
AMOUNT_MIN = 1
AMOUNT_MAX = 250_000


# What a ResultCode may look like as a string: `0`, `1032`, `SFC_IC0003`, `500.001.1001`.
_RESULT_CODE = re.compile(r"[A-Za-z0-9._-]{1,32}")


def result_code(value: object) -> str | None:
    """A ResultCode (callback or STK Query) as text, or None when it is not one.

    Daraja sends a JSON integer (`0`, `1032`) or a string (`"0"`). Only those are codes: a
    boolean (`false` would equal 0), a float (`0.0`), an empty or padded string (`" 0"`) are
    not, so no value that merely resembles 0 is ever taken for a payment. The
    one success is the integer 0 or the string "0" (`"00"` is a code, and not success).
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        text = str(value)
        return text if len(text) <= 32 else None
    if isinstance(value, str) and _RESULT_CODE.fullmatch(value):
        return value
    return None


def daraja_timestamp(now: datetime) -> str:
    """`YYYYMMDDHHmmss` in Africa/Nairobi time; `now` must be timezone-aware."""
    return now.astimezone(NAIROBI).strftime("%Y%m%d%H%M%S")


def stk_password(shortcode: str, passkey: str, timestamp: str) -> str:
    """base64(BusinessShortCode + Passkey + Timestamp), as Daraja defines it."""
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode()
