"""Storing the CheckoutRequestID of each accepted push, many pushes per transaction.

Every make-payment ends with a short locked transaction of its own (lock the push's early
callbacks, check for a ticket already matched, insert the push, read the status). Under load
these queue behind each other for their round trips, so the pushes accepted meanwhile are
stored together (`kit.batching.Batcher`, one batch at a time per process), in the lock order of
`callbacks.py`: callback log rows, push requests, then movie and ticket for an early callback.

Daraja answers a push once, so an accepted push is never dropped, and is made durable
promptly:
- it is recorded by a task of its own, which the request that sent the push being cancelled
  does not stop;
- if the database has not recorded it within JOURNAL_PUSH_AFTER_SECONDS (a database that
  is slow or hangs), it is also written to the journal, and the buyer is answered;
- if recording fails (the database went away while the push was in flight: with Daraja's
  1-3 s answers a real window), it is kept in the journal, which `payments.recovery` replays
  into the database, retrying while the database is away.
Either way the buyer gets the usual answer: the ticket exists (it was committed before the
push went out), and the push is on disk. Recording twice is harmless (a ticket that has its
push row is left alone).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from movietickets.daraja.client import StkPushAccepted
from movietickets.db.engine import DATABASE_UNAVAILABLE, Sessionmaker, locked_transaction
from movietickets.db.models import PaymentStatus
from movietickets.errors import PaymentOutcomeUnknown
from movietickets.kit.batching import Batcher
from movietickets.kit.clock import utcnow
from movietickets.payments.callbacks import record_pushes
from movietickets.payments.journal import PaymentJournal
from movietickets.payments.repository import NewPush

logger = logging.getLogger(__name__)

MAX_BATCH = 100


class _Recording:
    """One accepted push on its way to the database (and, if need be, to the journal)."""

    def __init__(self, push: NewPush) -> None:
        self.push = push
        self.journaled = False


class PushRecords:
    """One per process (created in the app's lifespan)."""

    def __init__(
        self,
        sessionmaker: Sessionmaker,
        journal: PaymentJournal,
        *,
        first_query_seconds: float,
        journal_after_seconds: float,
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._journal = journal
        self._first_query = timedelta(seconds=first_query_seconds)
        self._journal_after = journal_after_seconds
        self._batcher: Batcher[None, NewPush, PaymentStatus] = Batcher(
            self._record_batch, max_batch=max_batch
        )
        self._recordings: set[asyncio.Task[PaymentStatus]] = set()

    async def record(self, ticket_id: int, accepted: StkPushAccepted) -> PaymentStatus:
        """Stores the push and applies any callback that arrived before it; the ticket's status
        (Pending when the push went to the journal instead).

        Raises PaymentOutcomeUnknown (504, naming the ticket) only when neither the database
        nor the journal could take the push.
        """
        now = utcnow()
        recording = _Recording(
            NewPush(
                ticket_id=ticket_id,
                checkout_request_id=accepted.checkout_request_id,
                merchant_request_id=accepted.merchant_request_id,
                # When the reconciler asks Daraja about it, if no callback has come by then.
                next_query_at=now + self._first_query,
                created_at=now,
            )
        )
        task = asyncio.create_task(self._record_or_keep(recording))
        self._recordings.add(task)
        task.add_done_callback(self._recordings.discard)
        try:
            return await asyncio.wait_for(asyncio.shield(task), self._journal_after)
        except TimeoutError:
            pass
        # The database is slow to take it: on disk now, and in the database when it can.
        if await self._keep(recording, f"not recorded within {self._journal_after} s"):
            return PaymentStatus.PENDING
        return await task

    async def aclose(self) -> None:
        """Ends the batches in flight; the pushes they held go to the journal."""
        await self._batcher.aclose()
        await asyncio.gather(*self._recordings, return_exceptions=True)

    async def _record_or_keep(self, recording: _Recording) -> PaymentStatus:
        try:
            return await self._batcher.submit(None, recording.push)
        except (Exception, asyncio.CancelledError) as exc:
            reason = "shutting down" if isinstance(exc, asyncio.CancelledError) else exc
            if recording.journaled or await self._keep(recording, reason):
                return PaymentStatus.PENDING
            push = recording.push
            raise PaymentOutcomeUnknown(
                f"M-Pesa accepted the payment request for ticket {push.ticket_id} "
                f"(CheckoutRequestID {push.checkout_request_id}), but it could not be recorded "
                "yet. Do not pay again: the ticket is settled when M-Pesa reports the result",
                ticketId=push.ticket_id,
            ) from exc

    async def _keep(self, recording: _Recording, reason: object) -> bool:
        """Writes the push to the journal; False (an error logged with the push's ids) if
        the journal cannot take it."""
        push = recording.push
        try:
            await self._journal.keep_push(push)
        except OSError:
            logger.exception(
                "push %s (merchant request %s) of ticket %d accepted by M-Pesa but NOT "
                "RECORDED (%s), and the journal cannot take it",
                push.checkout_request_id,
                push.merchant_request_id,
                push.ticket_id,
                reason,
            )
            return False
        recording.journaled = True
        logger.warning(
            "push %s of ticket %d kept in the journal: %s",
            push.checkout_request_id,
            push.ticket_id,
            reason,
        )
        return True

    async def _record_batch(
        self, _key: None, pushes: list[NewPush]
    ) -> list[PaymentStatus | Exception]:
        try:
            return list(await self._record(pushes))
        except DATABASE_UNAVAILABLE:
            raise  # the database is away: one at a time would only keep everyone waiting
        except Exception:
            if len(pushes) == 1:
                raise
        # These pushes were accepted by Daraja: one of them failing (an early callback that
        # cannot be applied, a value refused) must not leave the others unrecorded.
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
