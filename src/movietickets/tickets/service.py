"""Reading tickets, and the decision to show or mask the buyer's details."""

from __future__ import annotations

from movietickets.db.engine import AsyncSession
from movietickets.errors import NotFound
from movietickets.tickets.privacy import token_opens
from movietickets.tickets.repository import TicketRepository
from movietickets.tickets.schemas import TicketPublic


class TicketService:
    def __init__(self, session: AsyncSession) -> None:
        self.tickets = TicketRepository(session)

    async def get_ticket(
        self, ticket_id: int, *, by_admin: bool, ticket_token: str | None
    ) -> TicketPublic:
        """The ticket with its movie; the buyer's name and phone number only for an admin or
        for whoever holds the ticket's access token, masked for everyone else."""
        found = await self.tickets.get_with_movie(ticket_id)
        if found is None:
            raise NotFound(f"Ticket {ticket_id} not found")
        ticket, movie = found
        public = TicketPublic.from_models(ticket, movie)
        if by_admin or token_opens(ticket, ticket_token):
            return public
        return public.masked()
