"""Buying tickets: hold seats under the movie's row lock, then ask M-Pesa for the money.

The seat check and the Pending ticket are committed in one short transaction BEFORE Daraja
is called; no lock or transaction is held while waiting for Safaricom.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets.daraja.client import DarajaClient, StkPushAccepted
from movietickets.daraja.errors import DarajaBusy, DarajaError, DarajaTimeout
from movietickets.db.base import utcnow
from movietickets.db.engine import locked_transaction
from movietickets.db.models import PaymentStatus
from movietickets.errors import (
    InvalidInput,
    PaymentOutcomeUnknown,
    PaymentProviderBusy,
    PaymentProviderError,
    RateLimited,
)
from movietickets.privacy import new_access_token, token_hash
from movietickets.ratelimit import RateLimits
from movietickets.repositories.movies import MovieRepository
from movietickets.repositories.tickets import TicketRepository
from movietickets.schemas.payments import PaymentInitiated, PaymentRequest
from movietickets.services.push_records import PushRecords
from movietickets.services.seat_holds import HeldTicket, SeatHolds, new_ticket, refusal
from movietickets.services.settlement import release_unanswered
from movietickets.settings import Settings

logger = logging.getLogger(__name__)


class PurchaseService:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        daraja: DarajaClient,
        settings: Settings,
        seat_holds: SeatHolds,
        push_records: PushRecords,
        rate_limits: RateLimits | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.daraja = daraja
        self.settings = settings
        self.seat_holds = seat_holds
        self.push_records = push_records
        self.rate_limits = rate_limits

    async def make_payment(self, order: PaymentRequest) -> PaymentInitiated:
        if order.quantity > self.settings.max_tickets_per_order:
            raise InvalidInput(
                "body.quantity", f"at most {self.settings.max_tickets_per_order} tickets per order"
            )
        await self._refuse_repeated_payment(order)
        access_token = new_access_token()
        ticket = await self._hold_seats(order, token_hash(access_token))
        # Shown on the customer's phone; Daraja allows 12 characters, the id's digits come last.
        reference = f"{self.settings.mpesa_account_reference_prefix}{ticket.ticket_id}"[-12:]
        await self._count_payment(order, ticket.ticket_id)
        try:
            accepted = await self.daraja.stk_push(
                phone_number=ticket.phone_number,
                amount=ticket.total_amount,
                account_reference=reference,
                transaction_desc=self.settings.mpesa_transaction_desc,
                callback_url=self.settings.callback_url,
            )
        except DarajaError as exc:
            if not isinstance(exc, DarajaTimeout) and self.rate_limits is not None:
                # Refused: no prompt reached the phone, so Daraja will take a retry.
                await self.rate_limits.forget_payment(*_payment_key(order))
            raise await self._push_failed(ticket.ticket_id, exc) from exc
        status = await self._record_push(ticket.ticket_id, accepted)
        return PaymentInitiated(
            ticketId=ticket.ticket_id,
            checkoutRequestId=accepted.checkout_request_id,
            responseDescription=accepted.response_description,
            paymentStatus=status,
            ticketAccessToken=access_token,
        )

    async def _refuse_repeated_payment(self, order: PaymentRequest) -> None:
        """429 before Daraja's own refusal of the same amount to the same phone (RATE_LIMIT_PHONE).

        Only tested here: what counts is a payment that holds seats (`_count_payment`).
        """
        if self.rate_limits is None:
            return
        retry_after = await self.rate_limits.payment_wait(*_payment_key(order))
        if retry_after is not None:
            raise _repeated_payment(retry_after)

    async def _count_payment(self, order: PaymentRequest, ticket_id: int) -> None:
        if self.rate_limits is None:
            return
        retry_after = await self.rate_limits.count_payment(*_payment_key(order))
        if retry_after is not None:
            # A concurrent request for the same payment counted first: this one gives way.
            await self._release(ticket_id, "the same payment was requested at the same time")
            raise _repeated_payment(retry_after)

    async def _push_failed(self, ticket_id: int, exc: DarajaError) -> PaymentProviderError:
        if isinstance(exc, DarajaTimeout):
            # No answer, or an unreadable acceptance: the prompt may be on the phone. The
            # seats stay held; a callback (matched by phone and amount) or the reconciler
            # settles the ticket.
            return PaymentOutcomeUnknown(
                f"M-Pesa did not answer in time; ticket {ticket_id} stays Pending until "
                "the payment is confirmed or refused",
                ticketId=ticket_id,
            )
        await self._release(ticket_id, f"M-Pesa refused the payment request: {exc}")
        if isinstance(exc, DarajaBusy):
            return PaymentProviderBusy(
                f"M-Pesa is busy; ticket {ticket_id} was cancelled, try again shortly",
                ticketId=ticket_id,
                headers={"Retry-After": str(int(exc.retry_after))},
            )
        return PaymentProviderError(
            f"M-Pesa refused the payment request; ticket {ticket_id} was cancelled",
            ticketId=ticket_id,
        )

    async def _hold_seats(self, order: PaymentRequest, access_token_hash: str) -> HeldTicket:
        if self.settings.unsafe_unlocked_seat_check:
            return await self._hold_seats_unlocked(order, access_token_hash)
        return await self.seat_holds.hold(order, access_token_hash)

    async def _hold_seats_unlocked(
        self, order: PaymentRequest, access_token_hash: str
    ) -> HeldTicket:
        """Test only: the original system's check-then-insert, with no lock between them."""
        now = utcnow()
        async with self.sessionmaker() as session:
            movie = await MovieRepository(session).seat_figures(order.movieId)
            held = (
                0
                if movie is None
                else await TicketRepository(session).held_seats(movie.movie_id, now)
            )
        available = 0 if movie is None else max(movie.max_tickets - movie.seats_paid - held, 0)
        refused = refusal(order, movie, available, now)
        if refused is not None:
            raise refused
        assert movie is not None
        hold = timedelta(seconds=self.settings.seat_hold_seconds)
        ticket = new_ticket(order, movie, now, hold, access_token_hash)
        async with self.sessionmaker() as session, session.begin():
            (ticket_id,) = await TicketRepository(session).add_pending([ticket])
        return HeldTicket(ticket_id, ticket.phone_number, ticket.total_amount)

    async def _release(self, ticket_id: int, reason: str) -> None:
        async with locked_transaction(self.sessionmaker) as session:
            await release_unanswered(session, ticket_id, reason)

    async def _record_push(self, ticket_id: int, accepted: StkPushAccepted) -> PaymentStatus:
        """Stores the CheckoutRequestID and applies any callback that arrived before it."""
        return await self.push_records.record(ticket_id, accepted)


def _payment_key(order: PaymentRequest) -> tuple[str, int, int]:
    """Phone, movie and quantity: together they fix the amount Daraja compares."""
    return order.phoneNumber, order.movieId, order.quantity


def _repeated_payment(retry_after: int) -> RateLimited:
    return RateLimited(
        "A payment of this amount to this phone number was requested moments ago, and M-Pesa "
        f"refuses a repeat within 2 minutes; try again in {retry_after} s",
        retry_after=retry_after,
    )
