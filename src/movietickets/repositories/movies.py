"""Movie rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from movietickets.db.models import Movie


class CatalogueRow(NamedTuple):
    """A movie's public columns, read without building ORM objects."""

    movie_id: int
    title: str
    description: str | None
    show_time: datetime
    price: int
    max_tickets: int
    image_url: str | None
    date_created: datetime
    last_updated: datetime


class SeatCheckRow(NamedTuple):
    """What the seat check needs of a movie, read under its row lock."""

    movie_id: int
    price: int
    max_tickets: int
    seats_paid: int
    show_time: datetime


class MovieRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def list_all(self) -> Sequence[Movie]:
        result = await self.session.scalars(select(Movie).order_by(Movie.movie_id))
        return result.all()

    async def catalogue_rows(self) -> list[CatalogueRow]:
        statement = select(
            Movie.movie_id,
            Movie.title,
            Movie.description,
            Movie.show_time,
            Movie.price,
            Movie.max_tickets,
            Movie.image_url,
            Movie.date_created,
            Movie.last_updated,
        ).order_by(Movie.movie_id)
        return [CatalogueRow(*row) for row in await self.session.execute(statement)]

    async def get(self, movie_id: int) -> Movie | None:
        return await self.session.get(Movie, movie_id)

    async def get_for_update(self, movie_id: int) -> Movie | None:
        """The movie with its row locked until the transaction ends (seat checks)."""
        statement = select(Movie).where(Movie.movie_id == movie_id).with_for_update()
        result = await self.session.scalars(statement.execution_options(populate_existing=True))
        return result.one_or_none()

    async def lock_for_seat_check(self, movie_id: int) -> SeatCheckRow | None:
        """The movie's seat figures, its row locked until the transaction ends."""
        return await self.seat_figures(movie_id, lock=True)

    async def seat_figures(self, movie_id: int, *, lock: bool = False) -> SeatCheckRow | None:
        statement = select(
            Movie.movie_id, Movie.price, Movie.max_tickets, Movie.seats_paid, Movie.show_time
        ).where(Movie.movie_id == movie_id)
        if lock:
            statement = statement.with_for_update()
        row = (await self.session.execute(statement)).one_or_none()
        return None if row is None else SeatCheckRow(*row)

    async def count(self) -> int:
        return (await self.session.scalar(select(func.count()).select_from(Movie))) or 0

    async def add(self, movie: Movie) -> Movie:
        self.session.add(movie)
        await self.session.flush()
        return movie

    async def flush(self) -> None:
        await self.session.flush()

    async def delete(self, movie: Movie) -> None:
        await self.session.delete(movie)
        await self.session.flush()
