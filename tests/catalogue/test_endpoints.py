"""The catalogue: original shapes and every input rule, on SQLite and MariaDB."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets.db.models import Movie

MATRIX_4 = {
    "title": "The Matrix Resurrections",
    "description": "The fourth installment in The Matrix franchise",
    "showTime": "2025-07-15T20:00:00.000Z",
    "price": 600,
    "max_tickets": 150,
    "imageUrl": "https://example.com/matrix4.jpg",
}
MOVIE_KEYS = {
    "movieId",
    "title",
    "description",
    "showTime",
    "price",
    "max_tickets",
    "imageUrl",
    "dateCreated",
    "lastUpdated",
}


async def count_movies(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return (await session.scalar(select(func.count()).select_from(Movie))) or 0


async def test_welcome(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.json() == {"message": "Welcome to the Movie Ticket System API"}


async def test_create_movie_returns_the_original_shape(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/movies", json=MATRIX_4)
    assert response.status_code == 201
    body = response.json()
    assert body["message"] == "Movie added successfully"
    movie = body["movie"]
    assert set(movie) == MOVIE_KEYS
    assert movie["showTime"] == "2025-07-15T20:00:00.000Z"
    assert movie["price"] == 600
    assert movie["max_tickets"] == 150
    assert movie["dateCreated"].endswith("Z")

    listed = (await client.get("/api/movies")).json()
    assert listed == {"movies": [movie]}
    assert (await client.get("/api/purchase-ticket")).json() == listed
    fetched = await client.get(f"/api/movies/{movie['movieId']}")
    assert fetched.json() == {"movie": movie}


async def test_defaults_and_local_time(client: httpx.AsyncClient) -> None:
    body = {"title": "Local", "showTime": "2025-07-15T20:00:00", "price": 500.0}
    movie = (await client.post("/api/movies", json=body)).json()["movie"]
    # No offset: Africa/Nairobi (UTC+3) time, returned in UTC.
    assert movie["showTime"] == "2025-07-15T17:00:00.000Z"
    assert movie["max_tickets"] == 100
    assert movie["price"] == 500
    assert movie["description"] is None
    assert movie["imageUrl"] is None


async def test_offsets_are_converted_to_utc(client: httpx.AsyncClient) -> None:
    body = {"title": "Offset", "showTime": "2025-07-15T20:00:00+05:30", "price": 1}
    movie = (await client.post("/api/movies", json=body)).json()["movie"]
    assert movie["showTime"] == "2025-07-15T14:30:00.000Z"


async def test_unknown_fields_are_ignored(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/movies", json={**MATRIX_4, "movieId": 999, "evil": 1})
    assert response.status_code == 201
    assert response.json()["movie"]["movieId"] != 999


INVALID_MOVIES: list[tuple[str, dict[str, Any], str]] = [
    ("missing title", {"showTime": "2025-07-15T20:00:00Z", "price": 1}, "body.title"),
    ("blank title", {**MATRIX_4, "title": "   "}, "body.title"),
    ("title too long", {**MATRIX_4, "title": "x" * 256}, "body.title"),
    ("title not a string", {**MATRIX_4, "title": 42}, "body.title"),
    ("price with cents", {**MATRIX_4, "price": 12.35}, "body.price"),
    ("price zero", {**MATRIX_4, "price": 0}, "body.price"),
    ("price negative", {**MATRIX_4, "price": -5}, "body.price"),
    ("price over maximum", {**MATRIX_4, "price": 250_001}, "body.price"),
    ("price as string", {**MATRIX_4, "price": "600"}, "body.price"),
    ("price as boolean", {**MATRIX_4, "price": True}, "body.price"),
    ("missing price", {"title": "x", "showTime": "2025-07-15T20:00:00Z"}, "body.price"),
    ("showTime not ISO", {**MATRIX_4, "showTime": "15/07/2025 8pm"}, "body.showTime"),
    ("showTime a number", {**MATRIX_4, "showTime": 1752609600}, "body.showTime"),
    ("missing showTime", {"title": "x", "price": 1}, "body.showTime"),
    ("max_tickets zero", {**MATRIX_4, "max_tickets": 0}, "body.max_tickets"),
    ("max_tickets too big", {**MATRIX_4, "max_tickets": 100_001}, "body.max_tickets"),
    ("max_tickets fraction", {**MATRIX_4, "max_tickets": 10.5}, "body.max_tickets"),
    ("imageUrl not http", {**MATRIX_4, "imageUrl": "javascript:alert(1)"}, "body.imageUrl"),
    ("imageUrl no host", {**MATRIX_4, "imageUrl": "https://"}, "body.imageUrl"),
]


@pytest.mark.parametrize(
    ("body", "field"), [(b, f) for _, b, f in INVALID_MOVIES], ids=[n for n, _, _ in INVALID_MOVIES]
)
async def test_invalid_movies_are_refused_and_nothing_is_stored(
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    body: dict[str, Any],
    field: str,
) -> None:
    response = await client.post("/api/movies", json=body)
    assert response.status_code == 422
    error = response.json()
    assert error["code"] == "validation_error"
    assert field in [detail["field"] for detail in error["details"]]
    assert await count_movies(sessionmaker) == 0


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "malformed_json"),
        (b"[1, 2]", "application/json", 422, "validation_error"),
        (b"", "application/json", 422, "validation_error"),
        (b"title=x", "application/x-www-form-urlencoded", 422, "validation_error"),
    ],
)
async def test_malformed_bodies(
    client: httpx.AsyncClient, content: bytes, content_type: str, status: int, code: str
) -> None:
    response = await client.post(
        "/api/movies", content=content, headers={"content-type": content_type}
    )
    assert response.status_code == status
    assert response.json()["code"] == code


async def test_huge_body_is_refused(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    response = await client.post("/api/movies", json={**MATRIX_4, "description": "x" * 100_000})
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert await count_movies(sessionmaker) == 0


async def test_huge_streamed_body_is_refused(client: httpx.AsyncClient) -> None:
    async def chunks() -> Any:
        for _ in range(100):
            yield b"x" * 1024

    response = await client.post(
        "/api/movies", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


# What int() reads as the id; an id is written in plain digits.
NOT_PLAIN_DIGITS = ["+{id}", "%20{id}", "{id}%20", "%2B{id}", "0_{id}", "{id}_0"]
OTHER_NOT_DIGITS = ["\u0661", "%D9%A1", "0x1", "1e0"]  # Arabic-Indic one, hex, exponent


@pytest.mark.parametrize(
    "movie_id",
    ["abc", "-1", "0", "1.5", "99999999999", "1_000", *OTHER_NOT_DIGITS]
    + [form.format(id=1) for form in NOT_PLAIN_DIGITS],
)
async def test_bad_ids_are_4xx(client: httpx.AsyncClient, movie_id: str) -> None:
    response = await client.get(f"/api/movies/{movie_id}")
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "path.id"


@pytest.mark.parametrize("form", NOT_PLAIN_DIGITS)
async def test_ids_that_are_not_plain_digits_change_nothing(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession], form: str
) -> None:
    movie = (await client.post("/api/movies", json=MATRIX_4)).json()["movie"]
    path = f"/api/movies/{form.format(id=movie['movieId'])}"
    assert (await client.patch(path, json={"price": 1})).status_code == 422
    assert (await client.delete(path)).status_code == 422
    assert (await client.get(f"/api/movies/{movie['movieId']}")).json() == {"movie": movie}
    assert await count_movies(sessionmaker) == 1


async def test_ids_in_plain_digits_are_read(client: httpx.AsyncClient) -> None:
    movie = (await client.post("/api/movies", json=MATRIX_4)).json()["movie"]
    assert (await client.get(f"/api/movies/00{movie['movieId']}")).json() == {"movie": movie}


async def test_unknown_movie_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/movies/12345")
    assert response.status_code == 404
    assert response.json() == {"error": "Movie 12345 not found", "code": "not_found"}


async def test_unknown_route_is_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


async def test_wrong_method_is_json_405(client: httpx.AsyncClient) -> None:
    response = await client.delete("/")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}


async def test_request_id_is_returned(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert len(response.headers["x-request-id"]) == 32
