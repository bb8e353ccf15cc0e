"""Ticket details: `GET /api/tickets/{id}`, masked unless the buyer or an admin asks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header

from movietickets.auth.dependencies import ViewingAdminDep
from movietickets.errors import TICKET_EXAMPLES, error_responses
from movietickets.tickets.dependencies import TicketServiceDep
from movietickets.tickets.schemas import TicketEnvelope, TicketId

router = APIRouter(prefix="/api", tags=["tickets"])


@router.get(
    "/tickets/{id}",
    operation_id="getTicket",
    summary="A ticket with its movie and payment state",
    description="The buyer's name and phone number are masked unless the request carries the "
    "ticket's `X-Ticket-Token` or an admin's bearer token. The bearer token is optional: an "
    "expired one reads as none (masked); a forged or malformed one is answered 401.",
    responses=error_responses(401, 404, 422, examples=TICKET_EXAMPLES),
    # Anyone may read a ticket: the admin's token is one of two options, not a requirement.
    openapi_extra={"security": [{}]},
)
async def get_ticket(
    id: TicketId,
    service: TicketServiceDep,
    admin: ViewingAdminDep,
    ticket_token: Annotated[
        str | None,
        Header(
            alias="X-Ticket-Token",
            max_length=128,
            description="The `ticketAccessToken` make-payment returned: unmasks the buyer.",
        ),
    ] = None,
) -> TicketEnvelope:
    ticket = await service.get_ticket(id, by_admin=admin is not None, ticket_token=ticket_token)
    return TicketEnvelope(ticket=ticket)
