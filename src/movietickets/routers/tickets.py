"""Ticket purchase and ticket details."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Response

from movietickets.dependencies import CatalogueDep, TicketServiceDep, ViewingAdminDep
from movietickets.errors import error_responses
from movietickets.privacy import token_opens
from movietickets.routers.movies import json_bytes
from movietickets.routers.params import TicketId
from movietickets.schemas.movies import MovieList
from movietickets.schemas.tickets import TicketEnvelope, TicketPublic

router = APIRouter(prefix="/api", tags=["tickets"])


@router.get(
    "/purchase-ticket",
    response_model=MovieList,
    operation_id="listMoviesForPurchase",
    summary="Movies on sale (same body as GET /api/movies)",
)
async def purchase_ticket(catalogue: CatalogueDep) -> Response:
    return json_bytes(await catalogue.movies_body())


@router.get(
    "/tickets/{id}",
    operation_id="getTicket",
    summary="A ticket with its movie and payment state",
    description="The buyer's name and phone number are masked unless the request carries the "
    "ticket's `X-Ticket-Token` or an admin's bearer token. The bearer token is optional: an "
    "expired one reads as none (masked); a forged or malformed one is answered 401.",
    responses=error_responses(401, 404, 422),
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
    ticket, movie = await service.get_ticket(id)
    public = TicketPublic.from_models(ticket, movie)
    if admin is None and not token_opens(ticket, ticket_token):
        public = public.masked()
    return TicketEnvelope(ticket=public)
