"""The catalogue as ready-to-send JSON bytes, cached in each process and kept fresh.

Every visitor reads the catalogue, so `GET /api/movies` and `GET /api/movies/{id}` answer
from bytes built once per change, instead of a query, ORM objects and a Pydantic dump on
every request.

Freshness. A snapshot's age counts from the moment its query was sent, so it holds every
change committed before then, by any instance.

- younger than `refresh_after` (0.5 s): served as it is;
- older: still served, and one background task reloads it, so that no request waits for the
  database (a lock-and-reload at expiry is what makes p99 spike);
- older than `max_age` (0.9 s), or taken before a movie write committed in this process:
  requests wait for a reload that began after that point (one reload, shared by all of them).

A change made on any instance is therefore visible on every instance within 1 s, and at once
on the instance that made it. A movie missing from the snapshot (added elsewhere a moment
ago) is looked up in the database rather than answered 404.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from movietickets.catalogue.repository import CatalogueRow, MovieRepository
from movietickets.catalogue.schemas import MoviePublic
from movietickets.db.engine import Sessionmaker, read_transaction
from movietickets.errors import NotFound

logger = logging.getLogger(__name__)

REFRESH_AFTER_SECONDS = 0.5
MAX_AGE_SECONDS = 0.9


@dataclass(frozen=True, slots=True)
class _Snapshot:
    # The rows the bodies were built from: a reload that reads the same rows keeps the bodies.
    rows: Sequence[CatalogueRow]
    movies_body: bytes
    movie_bodies: Mapping[int, bytes]
    started: float  # clock() when its query was about to be sent
    writes: int  # local writes committed before that


def _public(row: CatalogueRow) -> MoviePublic:
    return MoviePublic(
        movieId=row.movie_id,
        title=row.title,
        description=row.description,
        showTime=row.show_time,
        price=row.price,
        max_tickets=row.max_tickets,
        imageUrl=row.image_url,
        dateCreated=row.date_created,
        lastUpdated=row.last_updated,
    )


def movie_envelope(movie_json: bytes) -> bytes:
    """`{"movie": {...}}` around one movie's JSON, as `MovieEnvelope` dumps it."""
    return b'{"movie":' + movie_json + b"}"


def _build(rows: Sequence[CatalogueRow], started: float, writes: int) -> _Snapshot:
    # Each movie is dumped once; the list and the envelopes are spliced from the same bytes,
    # exactly as MovieList and MovieEnvelope dump them (compact JSON, no aliases).
    parts = {row.movie_id: _public(row).model_dump_json().encode() for row in rows}
    return _Snapshot(
        rows=rows,
        movies_body=b'{"movies":[' + b",".join(parts.values()) + b"]}",
        movie_bodies={movie_id: movie_envelope(part) for movie_id, part in parts.items()},
        started=started,
        writes=writes,
    )


class CatalogueCache:
    """One per process, created in the app's lifespan; `changed()` after a movie write."""

    def __init__(
        self,
        sessionmaker: Sessionmaker,
        *,
        refresh_after: float = REFRESH_AFTER_SECONDS,
        max_age: float = MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._refresh_after = refresh_after
        self._max_age = max_age
        self._clock = clock
        self._snapshot: _Snapshot | None = None
        self._writes = 0
        self._reload: asyncio.Task[_Snapshot] | None = None
        self._reload_started = 0.0
        self._reload_writes = 0

    async def movies_body(self) -> bytes:
        """`{"movies": [...]}`, ordered by movieId."""
        return (await self._current()).movies_body

    async def movie_body(self, movie_id: int) -> bytes:
        """`{"movie": {...}}`; raises NotFound."""
        body = (await self._current()).movie_bodies.get(movie_id)
        if body is None:
            body = await self._load_one(movie_id)
        return body

    def changed(self) -> None:
        """A movie write committed in this process: later requests wait for a reload."""
        self._writes += 1

    async def aclose(self) -> None:
        if self._reload is not None:
            self._reload.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reload

    async def _current(self) -> _Snapshot:
        snapshot = self._snapshot
        now = self._clock()
        if snapshot is not None and snapshot.writes == self._writes:
            age = now - snapshot.started
            if age < self._refresh_after:
                return snapshot
            if age < self._max_age:
                self._reloading(now)
                return snapshot
        # Shielded: a client that goes away must not cancel the reload others are waiting on.
        return await asyncio.shield(self._reloading(now))

    def _reloading(self, now: float) -> asyncio.Task[_Snapshot]:
        """The reload in flight, if it began recently and after the last local write; else a
        new one."""
        task = self._reload
        if (
            task is None
            or task.done()
            or self._reload_writes != self._writes
            or now - self._reload_started >= self._max_age
        ):
            task = asyncio.create_task(self._load(now, self._writes))
            task.add_done_callback(_log_failure)
            self._reload, self._reload_started, self._reload_writes = task, now, self._writes
        return task

    async def _load(self, started: float, writes: int) -> _Snapshot:
        async with read_transaction(self._sessionmaker) as session:
            rows = await MovieRepository(session).catalogue_rows()
        previous = self._snapshot
        if previous is not None and previous.rows == rows:
            snapshot = replace(previous, started=started, writes=writes)
        else:
            snapshot = _build(rows, started, writes)
        # Two reloads can overlap (one began before a local write): the later one wins.
        if previous is None or started >= previous.started:
            self._snapshot = snapshot
        return snapshot

    async def _load_one(self, movie_id: int) -> bytes:
        async with read_transaction(self._sessionmaker) as session:
            movie = await MovieRepository(session).get(movie_id)
        if movie is None:
            raise NotFound(f"Movie {movie_id} not found")
        return movie_envelope(MoviePublic.from_model(movie).model_dump_json().encode())


def _log_failure(task: asyncio.Task[_Snapshot]) -> None:
    # Retrieving the exception here also keeps asyncio from reporting it as never retrieved;
    # the requests that awaited this reload got it themselves (a 503).
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.warning("catalogue reload failed: %s: %s", type(error).__name__, error)
