"""The catalogue cache: exact bytes, the freshness bound, one reload at a time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from movietickets.catalogue.cache import CatalogueCache
from movietickets.catalogue.schemas import MovieCreate, MovieEnvelope, MovieList, MoviePublic
from movietickets.catalogue.service import MovieService
from movietickets.db.engine import create_engine, create_sessionmaker
from movietickets.db.models import Movie
from movietickets.errors import NotFound
from tests.conftest import make_settings
from tests.sql_hooks import statements_sent

SHOW = datetime.now(UTC) + timedelta(days=30)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def cache(
    sessionmaker: async_sessionmaker[AsyncSession], clock: FakeClock
) -> AsyncIterator[CatalogueCache]:
    cache = CatalogueCache(sessionmaker, clock=clock)
    yield cache
    await cache.aclose()


@pytest.fixture
def catalogue_queries(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every statement that reads the whole catalogue, as it is sent."""
    with statements_sent(engine, lambda statement: "FROM movie ORDER BY" in statement) as sent:
        yield sent


async def add_movie(
    sessionmaker: async_sessionmaker[AsyncSession], title: str = "Added", **fields: Any
) -> Movie:
    async with sessionmaker() as session, session.begin():
        movie = Movie(title=title, show_time=SHOW, price=500, max_tickets=100, seats_paid=0)
        for name, value in fields.items():
            setattr(movie, name, value)
        session.add(movie)
    return movie


def titles(body: bytes) -> list[str]:
    return [movie["title"] for movie in json.loads(body)["movies"]]


async def wait_for_reload(cache: CatalogueCache) -> None:
    for _ in range(200):
        reload = cache._reload  # the background task, if any
        if reload is None or reload.done():
            return
        await asyncio.sleep(0.01)


async def test_bodies_are_exactly_what_the_pydantic_models_dump(
    cache: CatalogueCache, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    first = await add_movie(
        sessionmaker,
        title='Nairobi "Half Life" \u2014 caf\u00e9 \U0001f3ac',
        description="line\nbreak, back\\slash",
        image_url="https://example.com/a.jpg",
    )
    second = await add_movie(sessionmaker, title="Second")
    async with sessionmaker() as session:
        rows = await session.scalars(select(Movie).order_by(Movie.movie_id))
        movies = [MoviePublic.from_model(movie) for movie in rows]
    assert await cache.movies_body() == MovieList(movies=movies).model_dump_json().encode()
    for movie_id, public in zip((first.movie_id, second.movie_id), movies, strict=True):
        expected = MovieEnvelope(movie=public).model_dump_json().encode()
        assert await cache.movie_body(movie_id) == expected


async def test_empty_catalogue(cache: CatalogueCache) -> None:
    assert await cache.movies_body() == b'{"movies":[]}'


async def test_a_young_snapshot_is_served_without_a_query(
    cache: CatalogueCache,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FakeClock,
    catalogue_queries: list[str],
) -> None:
    await add_movie(sessionmaker, "Old")
    assert titles(await cache.movies_body()) == ["Old"]
    await add_movie(sessionmaker, "New, written by another instance")
    clock.now += 0.49
    assert titles(await cache.movies_body()) == ["Old"]
    assert len(catalogue_queries) == 1


async def test_an_older_snapshot_is_served_while_one_reload_runs(
    cache: CatalogueCache,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FakeClock,
    catalogue_queries: list[str],
) -> None:
    await add_movie(sessionmaker, "Old")
    await cache.movies_body()
    await add_movie(sessionmaker, "New")
    clock.now += 0.6
    # Nobody waits: every reader gets the snapshot at hand, and one reload starts.
    bodies = await asyncio.gather(*(cache.movies_body() for _ in range(20)))
    assert {tuple(titles(body)) for body in bodies} == {("Old",)}
    await wait_for_reload(cache)
    assert titles(await cache.movies_body()) == ["Old", "New"]
    assert len(catalogue_queries) == 2


async def test_a_snapshot_past_the_maximum_age_is_never_served(
    cache: CatalogueCache,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FakeClock,
    catalogue_queries: list[str],
) -> None:
    await add_movie(sessionmaker, "Old")
    await cache.movies_body()
    await add_movie(sessionmaker, "New")
    clock.now += 0.9
    bodies = await asyncio.gather(*(cache.movies_body() for _ in range(20)))
    assert {tuple(titles(body)) for body in bodies} == {("Old", "New")}
    assert len(catalogue_queries) == 2  # the waiting readers shared one reload


async def test_a_local_write_is_visible_at_once(
    cache: CatalogueCache, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    assert titles(await cache.movies_body()) == []
    async with sessionmaker() as session, session.begin():
        service = MovieService(session, cache.changed)
        movie = await service.create_movie(
            MovieCreate(title="Mine", showTime=SHOW, price=100, max_tickets=10)
        )
        # Not committed yet: a reader now must not cache the old rows as if they were new.
        assert titles(await cache.movies_body()) == []
    assert titles(await cache.movies_body()) == ["Mine"]
    assert json.loads(await cache.movie_body(movie.movie_id))["movie"]["title"] == "Mine"


async def test_a_rolled_back_write_keeps_the_snapshot(
    cache: CatalogueCache,
    sessionmaker: async_sessionmaker[AsyncSession],
    catalogue_queries: list[str],
) -> None:
    await cache.movies_body()
    async with sessionmaker() as session:
        service = MovieService(session, cache.changed)
        await service.create_movie(MovieCreate(title="Gone", showTime=SHOW, price=100))
        await session.rollback()
    assert titles(await cache.movies_body()) == []
    assert len(catalogue_queries) == 1


async def test_a_movie_missing_from_the_snapshot_is_read_from_the_database(
    cache: CatalogueCache, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await cache.movies_body()
    movie = await add_movie(sessionmaker, "Just added elsewhere")
    body = json.loads(await cache.movie_body(movie.movie_id))
    assert body["movie"]["title"] == "Just added elsewhere"
    with pytest.raises(NotFound):
        await cache.movie_body(movie.movie_id + 1000)


async def test_concurrent_cold_readers_share_one_query(
    cache: CatalogueCache,
    sessionmaker: async_sessionmaker[AsyncSession],
    catalogue_queries: list[str],
) -> None:
    await add_movie(sessionmaker)
    bodies = await asyncio.gather(*(cache.movies_body() for _ in range(50)))
    assert len(set(bodies)) == 1
    assert len(catalogue_queries) == 1


async def test_a_database_failure_reaches_the_waiting_request(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    missing = tmp_path_factory.mktemp("gone") / "no" / "such" / "dir.db"
    engine = create_engine(make_settings(f"sqlite+aiosqlite:///{missing}"))
    cache = CatalogueCache(create_sessionmaker(engine))
    try:
        with pytest.raises(Exception, match="unable to open"):
            await cache.movies_body()
    finally:
        await cache.aclose()
        await engine.dispose()
