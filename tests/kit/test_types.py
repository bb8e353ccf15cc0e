"""Dates and times: read in the years 2000 to 2100 wherever the API reads one (422 outside
them, never 500), always written with four digits of year."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError

from movietickets.kit.types import UtcDateTime, format_utc
from tests.helpers import FUTURE, create_movie

OUT_OF_RANGE = [
    "0001-01-01T00:00:00+05:00",  # year 0 in UTC: datetime overflows
    "0001-01-01T00:00:00",  # Nairobi time, the same
    "0999-06-01T00:00:00Z",
    "0827-09-21T01:10:47.7Z",
    "1999-12-31T23:59:59.999Z",
    "2000-01-01T02:00:00+03:00",  # 1999 in UTC
    "2100-12-31T23:00:00-05:00",  # 2101 in UTC
    "2101-01-01T00:00:00Z",
    "9999-12-31T23:00:00-05:00",  # year 10000 in UTC: datetime overflows
    "9999-12-31T23:59:59.999999Z",
]
EDGES = {
    "2000-01-01T00:00:00Z": "2000-01-01T00:00:00.000Z",
    "2000-01-01T03:00:00": "2000-01-01T00:00:00.000Z",  # Nairobi, UTC+3
    "2100-12-31T23:59:59.999Z": "2100-12-31T23:59:59.999Z",
}

utc_datetime: TypeAdapter[datetime] = TypeAdapter(UtcDateTime)


@pytest.mark.parametrize("value", OUT_OF_RANGE)
def test_years_outside_2000_to_2100_are_refused(value: str) -> None:
    with pytest.raises(ValidationError, match=r"must be in the years 2000 to 2100 \(UTC\)"):
        utc_datetime.validate_python(value)


@pytest.mark.parametrize(("value", "written"), EDGES.items())
def test_the_first_and_last_moments_are_read(value: str, written: str) -> None:
    assert format_utc(utc_datetime.validate_python(value)) == written


def test_years_are_written_with_four_digits() -> None:
    written = format_utc(datetime(827, 9, 21, 1, 10, 47, 700_000, tzinfo=UTC))
    assert written == "0827-09-21T01:10:47.700Z"
    assert utc_datetime.dump_json(datetime(827, 9, 21, tzinfo=UTC)) == b'"0827-09-21T00:00:00.000Z"'


def test_the_range_is_in_the_schema() -> None:
    assert "2000 to 2100" in utc_datetime.json_schema()["description"]


# Every place the API reads a date: (method, path, where the value goes).
READERS = [
    ("POST", "/api/movies", "body.showTime"),
    ("PATCH", "/api/movies/{id}", "body.showTime"),
    ("GET", "/api/admin/sales", "query.from"),
    ("GET", "/api/admin/sales", "query.to"),
    ("GET", "/api/admin/tickets", "query.from"),
    ("GET", "/api/admin/tickets", "query.to"),
]


async def read_date(
    client: httpx.AsyncClient, method: str, path: str, field: str, value: str
) -> httpx.Response:
    movie = await create_movie(client)
    path = path.format(id=movie["movieId"])
    place, name = field.split(".")
    if place == "query":
        return await client.request(method, path, params={name: value})
    body: dict[str, Any] = {"title": "Edge", "showTime": FUTURE, "price": 100, name: value}
    return await client.request(method, path, json=body)


@pytest.mark.parametrize("value", OUT_OF_RANGE)
@pytest.mark.parametrize(("method", "path", "field"), READERS)
async def test_every_date_the_api_reads_is_refused_outside_the_range(
    client: httpx.AsyncClient, method: str, path: str, field: str, value: str
) -> None:
    response = await read_date(client, method, path, field, value)
    assert response.status_code == 422, response.text
    assert response.json()["details"] == [
        {"field": field, "message": "must be in the years 2000 to 2100 (UTC)"}
    ]


@pytest.mark.parametrize(("value", "written"), EDGES.items())
@pytest.mark.parametrize(("method", "path", "field"), READERS)
async def test_every_date_the_api_reads_is_accepted_at_the_edges(
    client: httpx.AsyncClient, method: str, path: str, field: str, value: str, written: str
) -> None:
    response = await read_date(client, method, path, field, value)
    assert response.status_code in (200, 201), response.text
    if field == "body.showTime":
        assert response.json()["movie"]["showTime"] == written
