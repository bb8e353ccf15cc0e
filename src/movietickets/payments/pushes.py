"""Storing the CheckoutRequestID of each accepted push, many pushes per transaction.

Every make-payment ends with a short locked transaction of its own (lock the push's early
callbacks, check for a ticket already matched, insert the push, read the status). Under load
these queue behind each other for their round trips, so the pushes accepted meanwhile are
stored together (`kit.batching.Batcher`, one batch at a time per process), in the lock order of
`callbacks.py`: callback log rows, push requests, then movie and ticket for an early callback.

A push Daraja accepted is never dropped: when recording it fails (the database went away
while the push was in flight, which with Daraja's 1-3 s answers is a real window), it is kept
in the journal, recorded by `payments.recovery` as soon as the database is back (backing off
while it is not), and the buyer is answered as if it were recorded: the ticket exists (it
was committed before the push went out), and the push is on disk.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from movietickets.daraja.client import StkPushAccepted
from movietickets.db.engine import Sessionmaker, locked_transaction
from movietickets.db.models import PaymentStatus
from movietickets.errors import PaymentNotRecorded
from movietickets.kit.batching import Batcher
from movietickets.kit.clock import utcnow
from movietickets.payments.callbacks import record_pushes
from movietickets.payments.journal import PaymentJournal
from movietickets.payments.repository import NewPush

logger = logging.getLogger(__name__)

MAX_BATCH = 100


class PushRecords:
    """One per process (created in the app's lifespan)."""

    def __init__(
        self,
        sessionmaker: Sessionmaker,
        *,
        first_query_seconds: float,
        journal: PaymentJournal | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._journal = journal
        self._first_query = timedelta(seconds=first_query_seconds)
        self._batcher: Batcher[None, NewPush, PaymentStatus] = Batcher(
            self._record_batch, max_batch=max_batch
        )

    async def record(self, ticket_id: int, accepted: StkPushAccepted) -> PaymentStatus:
        """Stores the push and applies any callback that arrived before it; the ticket's status.

        If it cannot be stored, it is kept in the journal and the ticket is Pending; raises
        PaymentNotRecorded (503, naming the ticket and the CheckoutRequestID) only when the
        journal cannot be written either (or there is none).
        """
        now = utcnow()
        push = NewPush(
            ticket_id=ticket_id,
            checkout_request_id=accepted.checkout_request_id,
            merchant_request_id=accepted.merchant_request_id,
            # When the reconciler asks Daraja about it, if no callback has come by then.
            next_query_at=now + self._first_query,
            created_at=now,
        )
        try:
            return await self._batcher.submit(None, push)
        except Exception as exc:
            await self._keep(push, exc)
            return PaymentStatus.PENDING

    async def _keep(self, push: NewPush, exc: Exception) -> None:
        if self._journal is not None:
            try:
                await self._journal.keep_push(push)
            except OSError:
                logger.exception("push %s could not be journaled", push.checkout_request_id)
            else:
                logger.warning(
                    "push %s of ticket %d not recorded (%s: %s): kept in the journal",
                    push.checkout_request_id,
                    push.ticket_id,
                    type(exc).__name__,
                    exc,
                )
                return
        logger.error(
            "push %s (merchant request %s) of ticket %d NOT RECORDED: %s",
            push.checkout_request_id,
            push.merchant_request_id,
            push.ticket_id,
            exc,
        )
        raise PaymentNotRecorded(
            f"M-Pesa accepted the payment request for ticket {push.ticket_id} (the prompt is on "
            "the phone) but it could not be recorded yet; do not pay again: the ticket is "
            "settled when M-Pesa's result is recorded",
            ticketId=push.ticket_id,
            checkoutRequestId=push.checkout_request_id,
        ) from exc

    async def aclose(self) -> None:
        await self._batcher.aclose()

    async def _record_batch(
        self, _key: None, pushes: list[NewPush]
    ) -> list[PaymentStatus | Exception]:
        try:
            return list(await self._record(pushes))
        except Exception:
            if len(pushes) == 1:
                raise
        # These pushes were accepted by Daraja: one of them failing (a deadlock, an early
        # callback that cannot be applied) must not leave the others unrecorded.
        outcomes: list[PaymentStatus | Exception] = []
        for push in pushes:
            try:
                outcomes += await self._record([push])
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    async def _record(self, pushes: list[NewPush]) -> list[PaymentStatus]:
        async with locked_transaction(self._sessionmaker) as session:
            return await record_pushes(session, pushes)
