"""Ticket details: `{"ticket": {..., "movie": {...}}}`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path
from pydantic import BaseModel, Field

from movietickets.catalogue.schemas import MovieSummary
from movietickets.db.models import Movie, PaymentStatus, Ticket
from movietickets.kit.types import DIGITS_ONLY, MAX_ROW_ID, UtcDateTime
from movietickets.tickets.privacy import mask_name, mask_phone

# Anything but plain digits (`+1`, `%201`, `1_000`), zero and out-of-range ids are refused with
# 422 before any query runs.
TicketId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="The ticket's id."), DIGITS_ONLY]


class TicketPublic(BaseModel):
    ticketId: int
    movieId: int
    customerName: str
    phoneNumber: str
    quantity: int
    totalAmount: int
    paymentStatus: PaymentStatus
    mpesaReceiptNumber: str | None
    transactionDate: UtcDateTime | None
    resultCode: str | None
    resultDesc: str | None
    needsRefund: bool
    piiMasked: bool = Field(
        default=False, description="True when customerName and phoneNumber are masked."
    )
    dateCreated: UtcDateTime
    lastUpdated: UtcDateTime
    movie: MovieSummary

    @classmethod
    def from_models(cls, ticket: Ticket, movie: Movie) -> TicketPublic:
        return cls(
            ticketId=ticket.ticket_id,
            movieId=ticket.movie_id,
            customerName=ticket.customer_name,
            phoneNumber=ticket.phone_number,
            quantity=ticket.quantity,
            totalAmount=ticket.total_amount,
            paymentStatus=PaymentStatus(ticket.payment_status),
            mpesaReceiptNumber=ticket.mpesa_receipt_number,
            transactionDate=ticket.transaction_date,
            resultCode=ticket.result_code,
            resultDesc=ticket.result_desc,
            needsRefund=ticket.needs_refund,
            dateCreated=ticket.date_created,
            lastUpdated=ticket.last_updated,
            movie=MovieSummary.from_model(movie),
        )

    def masked(self) -> TicketPublic:
        return self.model_copy(
            update={
                "customerName": mask_name(self.customerName),
                "phoneNumber": mask_phone(self.phoneNumber),
                "piiMasked": True,
            }
        )


class TicketEnvelope(BaseModel):
    ticket: TicketPublic
