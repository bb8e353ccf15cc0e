"""Settles pushes that got no callback, by STK Query, and gives up on silent ones.

A Pending ticket without a push row is a push whose answer never came (Daraja timed out, or
the process died or lost its database between sending the push and storing its answer): the
prompt may be on the phone and there is no CheckoutRequestID to query, so once the give-up
time has passed it becomes Unconfirmed (never plain Failed), for a late callback or the
operator to settle. A push recorded after its ticket became Unconfirmed (replayed from the
journal) is queried like a Pending one.

Safe to run in every instance at once: each push is claimed with a conditional UPDATE that
moves its `nextQueryAt` forward (a lease); only the instance whose UPDATE changed the row
queries Daraja. Queries run one at a time per instance and back off (Daraja's spike arrest).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from movietickets.daraja.callback import PaymentResult
from movietickets.daraja.client import DarajaClient
from movietickets.daraja.errors import DarajaBusy, DarajaError, DarajaStillProcessing
from movietickets.db.engine import Sessionmaker, locked_transaction, read_transaction
from movietickets.kit.clock import utcnow
from movietickets.payments.repository import (
    DuePush,
    IdempotencyKeyRepository,
    ReconciliationRepository,
)
from movietickets.payments.settlement import (
    Settlement,
    mark_unconfirmed,
    release_unanswered,
    settle,
)
from movietickets.settings import Settings

logger = logging.getLogger(__name__)

GAVE_UP = "No answer from M-Pesa; the payment was not confirmed"
UNCONFIRMED = (
    "M-Pesa's answer to the payment request never arrived: the customer may have been "
    "prompted and may have paid; outcome unknown"
)


@dataclass(slots=True)
class ReconcileReport:
    queried: int = 0
    settled: int = 0
    gave_up: int = 0
    unconfirmed: int = 0


class Reconciler:
    def __init__(
        self,
        sessionmaker: Sessionmaker,
        daraja: DarajaClient,
        settings: Settings,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.daraja = daraja
        self.settings = settings

    def _backoff(self, attempts: int) -> timedelta:
        seconds = self.settings.reconcile_retry_seconds * 2 ** max(attempts - 1, 0)
        return timedelta(seconds=min(seconds, self.settings.reconcile_max_interval_seconds))

    async def run_once(self) -> ReconcileReport:
        """One pass: claims due pushes, queries them, gives up on silent ones and marks the
        orphans (pushes without an answer) Unconfirmed."""
        report = ReconcileReport()
        now = utcnow()
        lease = timedelta(seconds=self.settings.mpesa_read_timeout_seconds * 2 + 5)
        async with locked_transaction(self.sessionmaker) as session:
            repository = ReconciliationRepository(session)
            due = await repository.due_pushes(now, self.settings.reconcile_batch_size)
            claimed = [push for push in due if await repository.claim(push, now + lease)]
        for push in claimed:
            report.queried += 1
            settled = await self._query(push)
            report.settled += settled is not None and settled is not Settlement.UNVERIFIED
            report.gave_up += settled is None
        report.unconfirmed += await self._unconfirm_orphans(now)
        await self._purge_idempotency_keys(now)
        return report

    async def _query(self, push: DuePush) -> Settlement | None:
        """Returns the settlement, `UNVERIFIED` while still pending, None after giving up."""
        push_id, ticket_id, checkout_id = push.push_id, push.ticket_id, push.checkout_request_id
        retry_in = self._backoff(push.query_attempts + 1)
        try:
            answer = await self.daraja.stk_query(checkout_id)
        except DarajaStillProcessing:
            answer = None
        except DarajaBusy as exc:
            answer, retry_in = None, max(retry_in, timedelta(seconds=exc.retry_after))
        except DarajaError as exc:
            logger.warning("reconciler: query for ticket %d failed: %s", ticket_id, exc)
            answer = None
        now = utcnow()
        async with locked_transaction(self.sessionmaker) as session:
            repository = ReconciliationRepository(session)
            if answer is not None:
                result = PaymentResult(
                    result_code=answer.result_code, result_desc=answer.result_desc
                )
                settled = await settle(session, ticket_id, result, now, check_amount=False)
                await repository.schedule(push_id, None)
                logger.info("reconciler: ticket %d settled by query: %s", ticket_id, settled)
                return settled
            give_up_at = push.ticket_created + timedelta(
                seconds=self.settings.reconcile_give_up_seconds
            )
            if now >= give_up_at:
                # An Unconfirmed ticket (its push recorded late, from the journal) stays so.
                await release_unanswered(session, ticket_id, GAVE_UP)
                await repository.schedule(push_id, None)
                logger.warning("reconciler: gave up on ticket %d (%s)", ticket_id, checkout_id)
                return None
            await repository.schedule(push_id, min(now + retry_in, give_up_at))
            return Settlement.UNVERIFIED

    async def _unconfirm_orphans(self, now: datetime) -> int:
        """Pending tickets whose push got no answer at all: no id to query, outcome unknown."""
        cutoff = now - timedelta(seconds=self.settings.reconcile_give_up_seconds)
        unconfirmed = 0
        async with read_transaction(self.sessionmaker) as session:
            orphans = await ReconciliationRepository(session).orphans(
                cutoff, self.settings.reconcile_batch_size
            )
        for ticket_id in orphans:
            async with locked_transaction(self.sessionmaker) as session:
                if not await ReconciliationRepository(session).is_orphan(ticket_id):
                    continue
                if await mark_unconfirmed(session, ticket_id, UNCONFIRMED):
                    unconfirmed += 1
                    logger.error(
                        "reconciler: ticket %d is Unconfirmed: its push got no answer, the "
                        "customer may have paid (see /api/admin/anomalies)",
                        ticket_id,
                    )
        return unconfirmed

    async def _purge_idempotency_keys(self, now: datetime) -> None:
        async with self.sessionmaker() as session, session.begin():
            await IdempotencyKeyRepository(session).purge_expired(now)

    async def run_forever(self) -> None:
        """The service's background loop; errors are logged and the loop goes on."""
        while True:
            try:
                report = await self.run_once()
                if report.queried or report.gave_up or report.unconfirmed:
                    logger.info("reconciler: %s", report)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("reconciler pass failed; retrying")
            await asyncio.sleep(self.settings.reconcile_poll_seconds)
