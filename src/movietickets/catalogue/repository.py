"""Movie rows: the catalogue's columns and the seat figures read under the row lock."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import func, select

from movietickets.db.models import Movie
from movietickets.kit.repository import RepositoryBase


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


class MovieRepository(RepositoryBase[Movie]):
    model = Movie

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

    async def lock_for_seat_check(self, movie_id: int) -> SeatCheckRow | None:
        """The movie's seat figures, its row locked until the transaction ends."""
        statement = (
            select(
                Movie.movie_id, Movie.price, Movie.max_tickets, Movie.seats_paid, Movie.show_time
            )
            .where(Movie.movie_id == movie_id)
            .with_for_update()
        )
        row = (await self.session.execute(statement)).one_or_none()
        return None if row is None else SeatCheckRow(*row)

    async def count(self) -> int:
        return (await self.session.scalar(select(func.count()).select_from(Movie))) or 0
