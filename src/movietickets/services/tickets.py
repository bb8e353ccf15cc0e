"""Reading tickets."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from movietickets.db.models import Movie, Ticket
from movietickets.errors import NotFound
from movietickets.repositories.movies import MovieRepository
from movietickets.repositories.tickets import TicketRepository


class TicketService:
    def __init__(self, session: AsyncSession) -> None:
        self.tickets = TicketRepository(session)
        self.movies = MovieRepository(session)

    async def get_ticket(self, ticket_id: int) -> tuple[Ticket, Movie]:
        ticket = await self.tickets.get(ticket_id)
        if ticket is None:
            raise NotFound(f"Ticket {ticket_id} not found")
        movie = await self.movies.get(ticket.movie_id)
        assert movie is not None
        return ticket, movie
