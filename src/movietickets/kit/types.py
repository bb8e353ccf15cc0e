"""Field types shared by the request and response schemas."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema

from movietickets.daraja.wire import NAIROBI

# Every time the API reads lies in these years (UTC): no showing, sale or report is outside
# them, and far from datetime's own limits, which an offset could otherwise push a time past.
FIRST_YEAR = 2000
LAST_YEAR = 2100
_OUT_OF_RANGE = f"must be in the years {FIRST_YEAR} to {LAST_YEAR} (UTC)"


def format_utc(value: datetime) -> str:
    """`2025-07-15T20:00:00.000Z`: UTC, milliseconds, `Z`, as the original API writes times.

    Always four digits of year (`strftime("%Y")` writes year 827 as `827`).
    """
    value = value.astimezone(UTC)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}.{value.microsecond // 1000:03d}Z"
    )


def _parse_iso8601(value: Any) -> datetime:
    if isinstance(value, datetime):
        # Ours (a row, a clock): written out as it is, whatever its year.
        return value.replace(tzinfo=NAIROBI) if value.tzinfo is None else value
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date and time string")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            "must be an ISO 8601 date and time, e.g. 2025-07-15T20:00:00.000Z"
        ) from None
    # A time without an offset is a local time at the cinema.
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=NAIROBI)
    # The local year first: converting year 1 or 9999 to UTC can overflow.
    if not FIRST_YEAR <= parsed.year <= LAST_YEAR:
        raise ValueError(_OUT_OF_RANGE)
    if not FIRST_YEAR <= parsed.astimezone(UTC).year <= LAST_YEAR:
        raise ValueError(_OUT_OF_RANGE)
    return parsed


def _whole_number(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("must be a number")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError("must be a whole number of shillings (M-Pesa has no cents)")
        return int(value)
    if isinstance(value, int):
        return value
    raise ValueError("must be a number")


def _strict_int(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer")
    return value


def _digits(value: Any) -> Any:
    """A path or query id: ASCII digits only (int() would also take `+1`, ` 1` and `1_000`)."""
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("must be a whole number written in digits (0-9) only")
    return value


def _http_url(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL")
    return value.strip()


# A datetime read as ISO 8601 (from a client: years 2000 to 2100, in UTC) and written as UTC
# with `Z`.
UtcDateTime = Annotated[
    datetime,
    BeforeValidator(_parse_iso8601),
    PlainSerializer(format_utc, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": f"ISO 8601. Read in the years {FIRST_YEAR} to {LAST_YEAR} (UTC), "
            "anything else is 422; written in UTC with a `Z`.",
            "example": "2025-07-15T20:00:00.000Z",
        }
    ),
]

Shillings = Annotated[
    int,
    BeforeValidator(_whole_number),
    Field(gt=0, le=250_000),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 250000}),
]

StrictInt = Annotated[int, BeforeValidator(_strict_int), WithJsonSchema({"type": "integer"})]

# For an integer in a path or query string: plain digits only. It goes after FastAPI's
# `Path(...)`/`Query(...)` in the `Annotated`, which keeps their bounds as `minimum`/`maximum`
# of an integer in the OpenAPI document.
DIGITS_ONLY = BeforeValidator(_digits)
# The largest id an INT column holds.
MAX_ROW_ID = 2_147_483_647

HttpUrlString = Annotated[
    str,
    BeforeValidator(_http_url),
    Field(max_length=2048),
    WithJsonSchema({"type": "string", "format": "uri", "maxLength": 2048}),
]
