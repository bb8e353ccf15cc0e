"""Pieces of the Daraja wire format shared by the client and the simulator."""

from __future__ import annotations

import base64
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


def daraja_timestamp(now: datetime) -> str:
    """`YYYYMMDDHHmmss` in Africa/Nairobi time; `now` must be timezone-aware."""
    return now.astimezone(NAIROBI).strftime("%Y%m%d%H%M%S")


def stk_password(shortcode: str, passkey: str, timestamp: str) -> str:
    """base64(BusinessShortCode + Passkey + Timestamp), as Daraja defines it."""
    return base64.b64encode(f"{shortcode}{passkey}{timestamp}".encode()).decode()
