"""The service as it ships, over real HTTP: uvicorn, migrations on start, the catalogue."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets.settings import Settings
from tests.catalogue.test_endpoints import MATRIX_4
from tests.conftest import admin_headers
from tests.live_server import live_server


async def test_catalogue_over_real_http(
    database_url: str, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> None:
    headers = await admin_headers(sessionmaker, settings)
    with live_server(database_url) as base_url:
        async with httpx.AsyncClient(base_url=base_url, headers=headers) as http:
            created = await http.post("/api/movies", json=MATRIX_4)
            assert created.status_code == 201
            movie_id = created.json()["movie"]["movieId"]
            listed = (await http.get("/api/movies")).json()["movies"]
            assert movie_id in [movie["movieId"] for movie in listed]
            assert (await http.get(f"/api/movies/{movie_id}")).status_code == 200
            assert (await http.get("/readyz")).json() == {"status": "ready"}
            bad = await http.post(
                "/api/movies", content=b"{", headers={"content-type": "application/json"}
            )
            assert bad.status_code == 400
