"""Admin report bodies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel, Field

from movietickets.db.models import PaymentStatus
from movietickets.kit.types import UtcDateTime
from movietickets.tickets.schemas import TicketPublic


@dataclass(frozen=True, slots=True)
class TicketFilter:
    """Criteria of the admin ticket listing; None means any."""

    movie_id: int | None = None
    status: PaymentStatus | None = None
    phone_number: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class MovieSales(BaseModel):
    movieId: int
    title: str
    showTime: UtcDateTime
    max_tickets: int
    seatsPaid: int = Field(description="Seats of Paid tickets.")
    seatsHeld: int = Field(description="Seats of Pending tickets whose hold has not expired.")
    revenue: int = Field(description="Shillings received for Paid tickets.")
    paidPurchases: int
    failedPurchases: int = Field(description="Failed tickets, cancellations included.")
    cancelledPurchases: int = Field(description="Cancelled by the customer (ResultCode 1032).")
    refundsDue: int


class SalesReport(BaseModel):
    movies: list[MovieSales]
    totalRevenue: int
    totalSeatsPaid: int


class TicketPage(BaseModel):
    tickets: list[TicketPublic]
    total: int
    limit: int
    offset: int


class CallbackRecord(BaseModel):
    callbackId: int
    checkoutRequestId: str | None
    ticketId: int | None
    outcome: str
    detail: str | None
    sourceIp: str | None
    receivedAt: UtcDateTime
    body: str = Field(
        description="The body as received, as text (bytes that are not UTF-8 shown as U+FFFD); "
        "only its first bytes when the callback was refused."
    )
    bodySize: int | None = Field(description="Bytes received (null: stored before this field).")
    bodySha256: str | None = Field(description="SHA-256 of the whole body received, in hex.")


class Anomalies(BaseModel):
    refundsDue: list[TicketPublic] = Field(description="Paid but no seat, or a wrong amount.")
    amountMismatches: list[CallbackRecord]
    unmatchedCallbacks: list[CallbackRecord] = Field(description="No ticket has that push id.")
    duplicateReceipts: list[CallbackRecord] = Field(
        description="Successes carrying a receipt number that already settles another ticket "
        "(not applied; `ticketId` is the ticket they were for)."
    )
    stuckPending: list[TicketPublic] = Field(
        description="Pending for longer than the reconciler waits before giving up."
    )
    unconfirmed: list[TicketPublic] = Field(
        description="Push sent, but M-Pesa's answer never arrived (no CheckoutRequestID to "
        "query): the customer may have paid. Check the paybill's transactions for that phone "
        "number and amount; a success callback that still arrives settles the ticket."
    )
