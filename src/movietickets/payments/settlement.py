"""Applying a payment result to a ticket: the one place a ticket leaves Pending (or Unconfirmed).

Callbacks, STK queries and the reconciler all come here, inside a transaction that locks the
movie row and then the ticket row (always in that order, so concurrent settlements and
purchases cannot deadlock). A final state is final: once M-Pesa has given a definitive
answer, later results change nothing.
"""

from __future__ import annotations

import enum
import logging
from datetime import datetime
from decimal import Decimal

from movietickets.catalogue.repository import MovieRepository
from movietickets.catalogue.seats import seats_left
from movietickets.daraja.callback import PaymentResult
from movietickets.db.engine import AsyncSession
from movietickets.db.models import RESULT_DESC_LENGTH, Movie, PaymentStatus, Ticket
from movietickets.tickets.repository import TicketRepository

logger = logging.getLogger(__name__)


class Settlement(enum.StrEnum):
    """What applying one payment result did to its ticket (`settle`'s answer)."""

    PAID = "paid"
    FAILED = "failed"
    # Paid, but its seats had been released and resold: recorded, flagged for a refund.
    REFUND_NEEDED = "refund_needed"
    # A success for another amount: never marked Paid, flagged for a refund.
    AMOUNT_MISMATCH = "amount_mismatch"
    # The ticket already had M-Pesa's final answer: duplicate or contradicting result.
    UNCHANGED = "unchanged"
    # A success callback without an amount cannot be checked; left for an STK query.
    UNVERIFIED = "unverified"
    # A success whose receipt number already settles another ticket: nothing changed (a receipt
    # settles one ticket at most); the ticket is left to the STK query, the callback reported.
    DUPLICATE_RECEIPT = "duplicate_receipt"
    UNKNOWN_TICKET = "unknown_ticket"


async def settle(
    session: AsyncSession,
    ticket_id: int,
    result: PaymentResult,
    now: datetime,
    *,
    check_amount: bool,
) -> Settlement:
    """Applies `result` to the ticket; `check_amount` for callbacks, whose amount is reported."""
    tickets = TicketRepository(session)
    unlocked = await tickets.get(ticket_id)
    if unlocked is None:
        return Settlement.UNKNOWN_TICKET
    movie = await MovieRepository(session).get_for_update(unlocked.movie_id)
    ticket = await tickets.get_for_update(ticket_id)
    assert movie is not None
    assert ticket is not None

    if ticket.payment_status == PaymentStatus.PAID or ticket.result_code is not None:
        logger.warning(
            "ticket %d already settled (%s, result %s); ignoring result %s",
            ticket_id,
            ticket.payment_status,
            ticket.result_code,
            result.result_code,
        )
        return Settlement.UNCHANGED

    if not result.succeeded:
        if ticket.payment_status == PaymentStatus.FAILED:
            # We had already given up on it; M-Pesa's reason is still worth keeping.
            ticket.result_code, ticket.result_desc = result.result_code, _desc(result.result_desc)
            return Settlement.UNCHANGED
        _mark_failed(ticket, result)
        return Settlement.FAILED

    if check_amount and result.amount is None:
        logger.warning("success for ticket %d without an amount: left to STK query", ticket_id)
        return Settlement.UNVERIFIED

    # Every branch below writes the receipt number: it must not be another ticket's. The
    # unique constraint decides (also against a concurrent settlement of another movie's
    # ticket); who holds it is looked up only to say so.
    receipt = result.receipt_number
    if receipt is not None and not await tickets.take_receipt(ticket_id, receipt):
        holder = await tickets.receipt_holder(receipt, excluding=ticket_id)
        logger.error(
            "ticket %d: receipt %s already settles ticket %s; success not applied",
            ticket_id,
            receipt,
            holder if holder is not None else "(being settled concurrently)",
        )
        return Settlement.DUPLICATE_RECEIPT

    amount = result.amount
    if check_amount and amount is not None and amount != ticket.total_amount:
        paid = _shown(amount)
        logger.error(
            "ticket %d: M-Pesa reports %s paid, the ticket costs %d; not marking it Paid",
            ticket_id,
            paid,
            ticket.total_amount,
        )
        _mark_needs_refund(
            ticket, result, f"Amount mismatch: paid {paid}, due {ticket.total_amount}"
        )
        return Settlement.AMOUNT_MISMATCH

    holds_seats = ticket.payment_status == PaymentStatus.PENDING and ticket.hold_expires_at > now
    if holds_seats or await _seats_left(session, movie, ticket, now) >= ticket.quantity:
        _mark_paid(movie, ticket, result)
        return Settlement.PAID

    logger.error(
        "ticket %d was paid (receipt %s) after its seats were released and sold: refund needed",
        ticket_id,
        result.receipt_number,
    )
    _mark_needs_refund(ticket, result, "Paid after the seats were released; refund due")
    return Settlement.REFUND_NEEDED


async def _seats_left(session: AsyncSession, movie: Movie, ticket: Ticket, now: datetime) -> int:
    held = await TicketRepository(session).held_seats(
        movie.movie_id, now, excluding=ticket.ticket_id
    )
    return seats_left(movie.max_tickets, movie.seats_paid, held)


def _desc(text: str) -> str:
    """A description cut to its column (M-Pesa's text may be any length)."""
    return text[:RESULT_DESC_LENGTH]


def _shown(amount: Decimal) -> str:
    """An amount for people: as sent, unless it is absurdly long (a callback may say anything)."""
    text = str(amount)
    return text if len(text) <= 24 else f"{amount:.6e}"


def _mark_paid(movie: Movie, ticket: Ticket, result: PaymentResult) -> None:
    ticket.payment_status = PaymentStatus.PAID
    ticket.mpesa_receipt_number = result.receipt_number
    ticket.transaction_date = result.transaction_date
    ticket.result_code, ticket.result_desc = result.result_code, _desc(result.result_desc)
    movie.seats_paid += ticket.quantity


def _mark_failed(ticket: Ticket, result: PaymentResult) -> None:
    ticket.payment_status = PaymentStatus.FAILED
    ticket.result_code, ticket.result_desc = result.result_code, _desc(result.result_desc)


def _mark_needs_refund(ticket: Ticket, result: PaymentResult, reason: str) -> None:
    ticket.payment_status = PaymentStatus.FAILED
    ticket.needs_refund = True
    ticket.mpesa_receipt_number = result.receipt_number
    ticket.transaction_date = result.transaction_date
    ticket.result_code, ticket.result_desc = result.result_code, _desc(reason)


async def release_unanswered(
    session: AsyncSession, ticket_id: int, reason: str, *, free_idempotency_key: bool = False
) -> bool:
    """Fails a Pending ticket that M-Pesa never answered for (push refused, or gave up).

    No result code is recorded, so a success that still arrives later is applied as a late
    payment instead of being ignored. `free_idempotency_key` for a ticket released before any
    push was sent: its request's key may then run again. Returns False if the ticket was no
    longer Pending.
    """
    ticket = await TicketRepository(session).get_for_update(ticket_id)
    if ticket is None or ticket.payment_status != PaymentStatus.PENDING:
        return False
    ticket.payment_status = PaymentStatus.FAILED
    ticket.result_desc = _desc(reason)
    if free_idempotency_key:
        ticket.idempotency_key = None
    return True


async def mark_unconfirmed(session: AsyncSession, ticket_id: int, reason: str) -> bool:
    """A Pending ticket whose push may have reached the phone, but whose answer never came.

    Without a CheckoutRequestID nothing can be queried, so waiting longer changes nothing: the
    ticket says so (Unconfirmed) and lets its seats go. A success callback that still arrives
    settles it as a late payment (matched by phone and amount), a failure makes it Failed.
    Returns False if the ticket was no longer Pending.
    """
    ticket = await TicketRepository(session).get_for_update(ticket_id)
    if ticket is None or ticket.payment_status != PaymentStatus.PENDING:
        return False
    ticket.payment_status = PaymentStatus.UNCONFIRMED
    ticket.result_desc = _desc(reason)
    return True
