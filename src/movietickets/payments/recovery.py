"""Replays the payments journal into the database once it is reachable again.

Runs in every service process (a background task of the app's lifespan), whatever
RECONCILE_IN_SERVICE says: each process replays its own journal file and those of dead
processes (`kit.journal`), so a journal left by a crash is replayed by the next process to
start on the same JOURNAL_DIR. Replaying is idempotent: a callback delivery is stored once
(its delivery id is unique) and applied once (only a `received` row is applied), and a push
is recorded once (a ticket that already has its push row is left alone).

While the database is away the first entry that finds it so stops the pass, and the next
pass waits longer (doubling from JOURNAL_REPLAY_SECONDS up to JOURNAL_REPLAY_MAX_SECONDS); an
entry that fails for another reason is kept, logged, and retried the same way. A push for a
ticket that no longer exists is dropped, with an error logged.
"""

from __future__ import annotations

import asyncio
import logging

from movietickets.daraja.callback import DarajaCallback
from movietickets.db.engine import DATABASE_UNAVAILABLE, Sessionmaker, locked_transaction
from movietickets.db.models import CallbackOutcome
from movietickets.kit.journal import Entry, ReplayReport
from movietickets.payments.callbacks import apply_callback, record_pushes, store_delivery_once
from movietickets.payments.journal import (
    CALLBACK,
    PUSH,
    CallbackDelivery,
    PaymentJournal,
    push_from_entry,
)
from movietickets.settings import Settings
from movietickets.tickets.repository import TicketRepository

logger = logging.getLogger(__name__)


class JournalReplayer:
    def __init__(
        self, journal: PaymentJournal, sessionmaker: Sessionmaker, settings: Settings
    ) -> None:
        self.journal = journal
        self.sessionmaker = sessionmaker
        self.settings = settings

    async def replay_once(self) -> ReplayReport:
        return await self.journal.journal.replay(self._replay, stop_on=DATABASE_UNAVAILABLE)

    async def _replay(self, entry: Entry) -> None:
        kind = entry.get("kind")
        if kind == CALLBACK:
            await self._replay_callback(CallbackDelivery.from_entry(entry))
        elif kind == PUSH:
            await self._replay_push(entry)
        else:
            raise ValueError(f"unknown journal entry kind {kind!r}")

    async def _replay_push(self, entry: Entry) -> None:
        push = push_from_entry(entry)
        async with locked_transaction(self.sessionmaker) as session:
            if not await TicketRepository(session).statuses([push.ticket_id]):
                logger.error(
                    "journal: push %s of ticket %d dropped: the ticket no longer exists",
                    push.checkout_request_id,
                    push.ticket_id,
                )
                return
            (status,) = await record_pushes(session, [push])
        logger.warning(
            "journal: push %s of ticket %d recorded (%s)",
            push.checkout_request_id,
            push.ticket_id,
            status,
        )

    async def _replay_callback(self, delivery: CallbackDelivery) -> None:
        callback_id = await store_delivery_once(self.sessionmaker, delivery)
        if delivery.outcome == CallbackOutcome.RECEIVED:
            callback = DarajaCallback.model_validate_json(delivery.body).Body.stkCallback
            await apply_callback(self.sessionmaker, callback_id, callback)
        logger.warning(
            "journal: callback %s (%s) stored as %d",
            delivery.delivery_id,
            delivery.checkout_request_id,
            callback_id,
        )

    async def run_forever(self) -> None:
        """The service's background loop; errors are logged and the loop goes on."""
        interval = base = self.settings.journal_replay_seconds
        while True:
            try:
                report = await self.replay_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("journal replay failed; retrying")
                report = ReplayReport(stopped=True)
            if report.handled or report.kept:
                logger.info("journal: %s", report)
            if report.stopped or report.kept:  # the database is still away: back off
                interval = min(interval * 2, self.settings.journal_replay_max_seconds)
            else:
                interval = base
            await asyncio.sleep(interval)
