"""The ticket service, on the request's transaction."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from movietickets.dependencies import SessionDep
from movietickets.tickets.service import TicketService


async def get_ticket_service(session: SessionDep) -> TicketService:
    return TicketService(session)


TicketServiceDep = Annotated[TicketService, Depends(get_ticket_service)]
