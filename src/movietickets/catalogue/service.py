"""The movie catalogue, and its management by admins."""

from __future__ import annotations

from collections.abc import Callable

from movietickets.catalogue.repository import MovieRepository
from movietickets.catalogue.schemas import MovieCreate, MovieUpdate
from movietickets.catalogue.seats import seats_left, seats_taken
from movietickets.db.engine import AsyncSession, after_commit
from movietickets.db.models import Movie
from movietickets.errors import Conflict, NotFound
from movietickets.kit.clock import utcnow
from movietickets.tickets.repository import TicketRepository


def _nothing() -> None:
    return None


class MovieService:
    """`catalogue_changed` is called after a write to the catalogue commits (cache upkeep)."""

    def __init__(
        self, session: AsyncSession, catalogue_changed: Callable[[], None] = _nothing
    ) -> None:
        self.session = session
        self.movies = MovieRepository(session)
        self.tickets = TicketRepository(session)
        self.catalogue_changed = catalogue_changed

    async def create_movie(self, data: MovieCreate) -> Movie:
        movie = Movie(
            title=data.title,
            description=data.description,
            show_time=data.showTime,
            price=data.price,
            max_tickets=data.max_tickets,
            image_url=data.imageUrl,
            seats_paid=0,
        )
        movie = await self.movies.add(movie)
        after_commit(self.session, self.catalogue_changed)
        return movie

    async def _locked(self, movie_id: int) -> Movie:
        # The same row lock as a purchase: seat counts cannot move while we decide.
        movie = await self.movies.get_for_update(movie_id)
        if movie is None:
            raise NotFound(f"Movie {movie_id} not found")
        return movie

    async def update_movie(self, movie_id: int, changes: MovieUpdate) -> Movie:
        movie = await self._locked(movie_id)
        fields = changes.model_fields_set
        if "max_tickets" in fields and changes.max_tickets is not None:
            held = await self.tickets.held_seats(movie_id, utcnow())
            taken = seats_taken(movie.seats_paid, held)
            if changes.max_tickets < taken:
                raise Conflict(
                    f"max_tickets cannot go below the {taken} seats already sold or held",
                    seatsAvailable=seats_left(movie.max_tickets, movie.seats_paid, held),
                )
            movie.max_tickets = changes.max_tickets
        if "title" in fields and changes.title is not None:
            movie.title = changes.title
        if "description" in fields:
            movie.description = changes.description
        if "showTime" in fields and changes.showTime is not None:
            movie.show_time = changes.showTime
        if "price" in fields and changes.price is not None:
            movie.price = changes.price
        if "imageUrl" in fields:
            movie.image_url = changes.imageUrl
        movie.last_updated = utcnow()
        await self.movies.flush()
        after_commit(self.session, self.catalogue_changed)
        return movie

    async def delete_movie(self, movie_id: int) -> None:
        movie = await self._locked(movie_id)
        blocking = await self.tickets.count_blocking_deletion(movie_id)
        if blocking:
            raise Conflict(
                f"Movie {movie_id} has {blocking} paid, pending, unconfirmed or refund-due "
                "tickets; it cannot be deleted"
            )
        await self.tickets.delete_for_movie(movie_id)
        await self.movies.delete(movie)
        after_commit(self.session, self.catalogue_changed)
