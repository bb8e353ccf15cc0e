"""Field types shared by the request and response schemas."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, PlainSerializer, WithJsonSchema

from movietickets.daraja.wire import NAIROBI


def format_utc(value: datetime) -> str:
    """`2025-07-15T20:00:00.000Z`: UTC, milliseconds, `Z`, as the original API writes times."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _parse_iso8601(value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                "must be an ISO 8601 date and time, e.g. 2025-07-15T20:00:00.000Z"
            ) from None
    else:
        raise ValueError("must be an ISO 8601 date and time string")
    # A time without an offset is a local time at the cinema.
    return parsed.replace(tzinfo=NAIROBI) if parsed.tzinfo is None else parsed


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


def _http_url(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http(s) URL")
    return value.strip()


# A datetime read as ISO 8601 and written as UTC with `Z`.
UtcDateTime = Annotated[
    datetime,
    BeforeValidator(_parse_iso8601),
    PlainSerializer(format_utc, return_type=str),
    WithJsonSchema(
        {"type": "string", "format": "date-time", "example": "2025-07-15T20:00:00.000Z"}
    ),
]

Shillings = Annotated[
    int,
    BeforeValidator(_whole_number),
    Field(gt=0, le=250_000),
    WithJsonSchema({"type": "integer", "minimum": 1, "maximum": 250000}),
]

StrictInt = Annotated[int, BeforeValidator(_strict_int), WithJsonSchema({"type": "integer"})]

HttpUrlString = Annotated[
    str,
    BeforeValidator(_http_url),
    Field(max_length=2048),
    WithJsonSchema({"type": "string", "format": "uri", "maxLength": 2048}),
]
