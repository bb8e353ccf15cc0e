"""Buying tickets: hold seats under the movie's row lock, then ask M-Pesa for the money.

The seat check and the Pending ticket are committed in one short transaction BEFORE Daraja
is called; no lock or transaction is held while waiting for Safaricom.
"""

from __future__ import annotations

from movietickets.daraja.client import DarajaClient
from movietickets.daraja.errors import DarajaError, DarajaTimeout
from movietickets.db.engine import Sessionmaker, locked_transaction
from movietickets.errors import InvalidInput, RateLimited
from movietickets.kit.ratelimit import RateLimits, RepeatedPayment, repeated_payment
from movietickets.payments.provider_errors import DarajaCall, provider_error
from movietickets.payments.pushes import PushRecords
from movietickets.payments.schemas import PaymentInitiated
from movietickets.payments.seat_holds import Order, SeatHolds
from movietickets.payments.settlement import release_unanswered
from movietickets.settings import Settings
from movietickets.tickets.privacy import new_access_token, token_hash


class PurchaseService:
    def __init__(
        self,
        sessionmaker: Sessionmaker,
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

    async def make_payment(
        self, order: Order, *, access_token: str | None = None
    ) -> PaymentInitiated:
        """Holds the order's seats as a Pending ticket, then sends the STK Push.

        `access_token`: the ticket's, when the caller chose it (an Idempotency-Key attempt).
        The committed Pending ticket is itself the mark that a push is about to go out: a
        Pending ticket without a push row is a push in flight, or one whose answer was lost
        (a timeout, a crash, the database gone), which the reconciler makes Unconfirmed.

        Raises, before anything is stored: InvalidInput (422: more tickets than an order may
        have, a total over M-Pesa's limit), RateLimited (429: the same payment moments ago),
        NotFound (404: no such movie), Conflict (409: the showing has started) and SoldOut
        (409). After the ticket is stored, Daraja's errors name it (`ticketId`):
        PaymentProviderError (502, refused) and PaymentProviderBusy (503), which cancel the
        ticket and release its seats, and PaymentOutcomeUnknown (504, no answer), which keeps
        the ticket Pending for a callback or the reconciler to settle.
        """
        if order.quantity > self.settings.max_tickets_per_order:
            raise InvalidInput(
                "body.quantity", f"at most {self.settings.max_tickets_per_order} tickets per order"
            )
        repeat = repeated_payment(
            self.rate_limits, order.phone_number, order.movie_id, order.quantity
        )
        # Only tested here: what counts is a payment that holds seats (below).
        retry_after = await repeat.wait()
        if retry_after is not None:
            raise _repeated_payment(retry_after)
        access_token = access_token or new_access_token()
        ticket = await self.seat_holds.hold(order, token_hash(access_token))
        await self._count(repeat, ticket.ticket_id)
        # Shown on the customer's phone; Daraja allows 12 characters, the id's digits come last.
        reference = f"{self.settings.mpesa_account_reference_prefix}{ticket.ticket_id}"[-12:]
        try:
            accepted = await self.daraja.stk_push(
                phone_number=ticket.phone_number,
                amount=ticket.total_amount,
                account_reference=reference,
                transaction_desc=self.settings.mpesa_transaction_desc,
                callback_url=self.settings.callback_url,
            )
        except DarajaError as exc:
            if not isinstance(exc, DarajaTimeout):
                # Refused: no prompt reached the phone, so Daraja will take a retry. The
                # seats go back; a timed-out push keeps them (the prompt may be on the phone,
                # and a callback matched by phone and amount or the reconciler settles it).
                await repeat.forget()
                await self._release(ticket.ticket_id, f"M-Pesa refused the payment request: {exc}")
            raise provider_error(DarajaCall.PUSH, exc, ticket_id=ticket.ticket_id) from exc
        # Stores the CheckoutRequestID and applies any callback that arrived before it.
        status = await self.push_records.record(ticket.ticket_id, accepted)
        return PaymentInitiated(
            ticketId=ticket.ticket_id,
            checkoutRequestId=accepted.checkout_request_id,
            responseDescription=accepted.response_description,
            paymentStatus=status,
            ticketAccessToken=access_token,
        )

    async def _count(self, repeat: RepeatedPayment, ticket_id: int) -> None:
        retry_after = await repeat.count()
        if retry_after is not None:
            # A concurrent request for the same payment counted first: this one gives way.
            await self._release(
                ticket_id, "the same payment was requested at the same time", before_push=True
            )
            raise _repeated_payment(retry_after)

    async def _release(self, ticket_id: int, reason: str, *, before_push: bool = False) -> None:
        async with locked_transaction(self.sessionmaker) as session:
            # Before any push, the request's Idempotency-Key may run again.
            await release_unanswered(session, ticket_id, reason, free_idempotency_key=before_push)


def _repeated_payment(retry_after: int) -> RateLimited:
    return RateLimited(
        "A payment of this amount to this phone number was requested moments ago, and M-Pesa "
        f"refuses a repeat within 2 minutes; try again in {retry_after} s",
        retry_after=retry_after,
    )
