"""Reading tickets."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from movietickets.db.models import Movie, Ticket
from movietickets.errors import NotFound
from movietickets.repositories.tickets import TicketRepository


class TicketService:
    def __init__(self, session: AsyncSession) -> None:
        self.tickets = TicketRepository(session)

    async def get_ticket(self, ticket_id: int) -> tuple[Ticket, Movie]:
        found = await self.tickets.get_with_movie(ticket_id)
        if found is None:
            raise NotFound(f"Ticket {ticket_id} not found")
        return found
