"""`movietickets serve` with the original system's seat check: check, then insert, no lock.

Run as `python -m tests.e2e.unlocked_server serve` by the concurrency proof, to show that its
rush catches an oversell. Nothing of this is in the product.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import select

from movietickets import cli
from movietickets.app import create_app_from_env as create_shipped_app
from movietickets.catalogue.repository import SeatCheckRow
from movietickets.catalogue.seats import seats_left
from movietickets.db.models import Movie
from movietickets.kit.clock import utcnow
from movietickets.payments.seat_holds import HeldTicket, Order, SeatHolds, new_ticket, refusal
from movietickets.tickets.repository import TicketRepository


class UnlockedSeatHolds(SeatHolds):
    async def hold(self, order: Order, access_token_hash: str | None) -> HeldTicket:
        now = utcnow()
        async with self._sessionmaker() as session:
            row = (
                await session.execute(
                    select(
                        Movie.movie_id,
                        Movie.price,
                        Movie.max_tickets,
                        Movie.seats_paid,
                        Movie.show_time,
                    ).where(Movie.movie_id == order.movie_id)
                )
            ).one_or_none()
            movie = None if row is None else SeatCheckRow(*row)
            held = (
                0
                if movie is None
                else await TicketRepository(session).held_seats(movie.movie_id, now)
            )
        available = 0 if movie is None else seats_left(movie.max_tickets, movie.seats_paid, held)
        refused = refusal(order, movie, available, now)
        if refused is not None:
            raise refused
        assert movie is not None
        ticket = new_ticket(order, movie, now, self._hold, access_token_hash)
        async with self._sessionmaker() as session, session.begin():
            (ticket_id,) = await TicketRepository(session).add_pending([ticket])
        return HeldTicket(ticket_id, ticket.phone_number, ticket.total_amount)


def create_app_from_env() -> FastAPI:
    app = create_shipped_app()
    shipped_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[None]:
        async with shipped_lifespan(application):
            resources = application.state.resources
            locked = resources.seat_holds
            resources.seat_holds = UnlockedSeatHolds(
                resources.sessionmaker, hold_seconds=resources.settings.seat_hold_seconds
            )
            await locked.aclose()
            yield

    app.router.lifespan_context = lifespan
    return app


if __name__ == "__main__":
    cli.APP_FACTORY = "tests.e2e.unlocked_server:create_app_from_env"
    cli.main()
