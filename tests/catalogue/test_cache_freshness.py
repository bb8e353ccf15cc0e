"""A catalogue change made through the API is visible on every instance within 1 s."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets.app import create_app
from movietickets.settings import Settings
from tests.catalogue.test_endpoints import MATRIX_4
from tests.conftest import admin_client
from tests.live_server import live_server

FRESHNESS_SECONDS = 1.0


@pytest.fixture
async def other_instance(settings: Settings, app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A second instance of the service on the same database, with its own cache."""
    other = create_app(settings)
    async with LifespanManager(other):
        transport = httpx.ASGITransport(app=other)
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as client:
            yield client


def listed_ids(response: httpx.Response) -> set[int]:
    assert response.status_code == 200, response.text
    return {movie["movieId"] for movie in response.json()["movies"]}


async def test_a_new_movie_reaches_another_instance_within_a_second(
    client: httpx.AsyncClient, other_instance: httpx.AsyncClient
) -> None:
    # Both caches hold a snapshot without the movie.
    assert listed_ids(await client.get("/api/movies")) == set()
    assert listed_ids(await other_instance.get("/api/movies")) == set()

    created = await client.post("/api/movies", json=MATRIX_4)
    written = time.monotonic()
    movie_id = created.json()["movie"]["movieId"]
    # The instance that made the change shows it at once, on every catalogue route.
    assert movie_id in listed_ids(await client.get("/api/movies"))
    assert movie_id in listed_ids(await client.get("/api/purchase-ticket"))
    assert (await client.get(f"/api/movies/{movie_id}")).status_code == 200

    # The other one within the bound (and one movie read never 404s in the meantime).
    assert (await other_instance.get(f"/api/movies/{movie_id}")).status_code == 200
    while movie_id not in listed_ids(await other_instance.get("/api/movies")):
        assert time.monotonic() - written < FRESHNESS_SECONDS
        await asyncio.sleep(0.02)


async def test_two_workers_agree_within_a_second(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    """Over real HTTP with two worker processes; each request on a new connection."""
    fresh = {"Connection": "close"}
    with live_server(database_url, workers=2) as base_url:
        async with admin_client(sessionmaker, settings, base_url=base_url, timeout=10) as http:

            async def everyone_lists(movie_id: int | None) -> bool:
                responses = await asyncio.gather(
                    *(http.get("/api/movies", headers=fresh) for _ in range(30))
                )
                return all(
                    movie_id is None or movie_id in listed_ids(response) for response in responses
                )

            assert await everyone_lists(None)  # both workers have a snapshot cached
            created = await http.post("/api/movies", json=MATRIX_4)
            written = time.monotonic()
            movie_id = created.json()["movie"]["movieId"]
            await asyncio.sleep(max(0.0, FRESHNESS_SECONDS - (time.monotonic() - written)))
            assert await everyone_lists(movie_id)
