"""Daraja callbacks: stored as received, then applied to their ticket under row locks.

Lock order, everywhere: callback log rows, push request, movie, ticket. A callback that
overtakes the push's own response (its CheckoutRequestID is not stored yet) is kept as
`unmatched` and applied by `record_pushes` when the push is recorded; the shared lock
order guarantees one of the two transactions sees the other's work.

Daraja sends a callback once and never again, so a delivery that cannot be stored or applied
because the database is away is kept in the journal (`payments.journal`) and answered as if
stored; `payments.recovery` stores and applies it when the database is back. Each delivery
gets an id on arrival (`deliveryId`), so that it is stored once however often it is replayed,
and a stored callback is applied only while it is still `received`.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import NoReturn

from pydantic import ValidationError

from movietickets.daraja.callback import (
    DarajaCallback,
    PaymentResult,
    StkCallback,
    metadata_text,
    payment_result,
)
from movietickets.db.engine import (
    DATABASE_UNAVAILABLE,
    AsyncSession,
    Sessionmaker,
    locked_transaction,
)
from movietickets.db.models import (
    MERCHANT_REQUEST_ID_LENGTH,
    PRICE_MAX,
    CallbackLog,
    CallbackOutcome,
    PaymentStatus,
    PushRequest,
)
from movietickets.errors import Forbidden, MalformedCallback, RateLimited
from movietickets.kit.clock import utcnow
from movietickets.kit.net import in_networks, parse_address
from movietickets.kit.ratelimit import RateLimits
from movietickets.payments.journal import CallbackDelivery, PaymentJournal
from movietickets.payments.repository import CallbackLogRepository, NewPush, PushRequestRepository
from movietickets.payments.settlement import Settlement, settle
from movietickets.settings import Settings
from movietickets.tickets.repository import TicketRepository

logger = logging.getLogger(__name__)

_OUTCOMES = {
    Settlement.PAID: CallbackOutcome.APPLIED,
    Settlement.FAILED: CallbackOutcome.APPLIED,
    Settlement.REFUND_NEEDED: CallbackOutcome.APPLIED,
    Settlement.AMOUNT_MISMATCH: CallbackOutcome.AMOUNT_MISMATCH,
    Settlement.UNCHANGED: CallbackOutcome.IGNORED,
    Settlement.UNVERIFIED: CallbackOutcome.IGNORED,
    Settlement.DUPLICATE_RECEIPT: CallbackOutcome.DUPLICATE_RECEIPT,
    Settlement.UNKNOWN_TICKET: CallbackOutcome.UNMATCHED,
}

# How far back a success callback may find the ticket of a push whose answer never came.
ORPHAN_WINDOW = timedelta(hours=2)
# What is kept of a refused callback's body: all of a real STK callback (under 1 KB), with
# the size and SHA-256 of the whole; a forger's 64 KB is not worth storing.
REFUSED_BODY_BYTES = 2048


class CallbackService:
    """Receives Daraja's STK callbacks: checks where they come from, stores each body as
    received (`callbacklog`), then applies it to its ticket.

    `receive` raises Forbidden for a callback that fails the checks (wrong or missing secret,
    address not allowed) and MalformedCallback for a body that is not an STK callback; both
    are stored first (a refused one: its first REFUSED_BODY_BYTES). Refused callbacks count
    against RATE_LIMIT_REFUSED_CALLBACKS per address: over it, RateLimited, nothing stored.
    A callback for a push not recorded yet is kept as `unmatched` and applied by
    `record_pushes` when the push is recorded. While the database cannot be reached, what
    would have been stored goes to the journal instead, and the answer is the same.
    """

    def __init__(
        self,
        sessionmaker: Sessionmaker,
        settings: Settings,
        journal: PaymentJournal,
        rate_limits: RateLimits | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.settings = settings
        self.journal = journal
        self.rate_limits = rate_limits

    def token_is_valid(self, token: str | None) -> bool:
        expected = self.settings.mpesa_callback_token
        if expected is None:
            return True
        given = (token or "").encode()
        return hmac.compare_digest(given, expected.get_secret_value().encode())

    def source_is_allowed(self, source_ip: str | None) -> bool:
        allowed = self.settings.mpesa_callback_allowed_ips
        if not allowed:
            return True
        address = parse_address(source_ip) if source_ip else None
        return address is not None and in_networks(address, allowed)

    def refusal(self, token: str | None, source_ip: str | None) -> str | None:
        """Why a callback is not to be believed, or None."""
        if not self.source_is_allowed(source_ip):
            return "address not allowed"
        if not self.token_is_valid(token):
            return "bad token"
        return None

    async def receive(self, raw: bytes, *, token: str | None, source_ip: str | None) -> None:
        """Stores the body as received, then applies it. Raises for refused or malformed ones.

        While the database cannot be reached the delivery is kept in the journal (stored and
        applied by `payments.recovery` when the database is back) and answered as if stored;
        the database's error (503) only if the journal cannot be written either.
        """
        refusal = self.refusal(token, source_ip)
        if refusal is not None:
            await self._refuse(raw, refusal, source_ip)
        try:
            callback: StkCallback | None = DarajaCallback.model_validate_json(raw).Body.stkCallback
        except ValidationError:
            callback = None
        delivery = CallbackDelivery.arrived(
            raw,
            source_ip,
            CallbackOutcome.MALFORMED if callback is None else CallbackOutcome.RECEIVED,
            checkout_request_id=callback.CheckoutRequestID if callback else None,
        )
        stored_as = await self._store_and_apply(delivery, callback)
        if callback is None:
            logger.warning("callback %s from %s is malformed", stored_as, source_ip)
            raise MalformedCallback("Not a Daraja STK callback body")

    async def _refuse(self, raw: bytes, refusal: str, source_ip: str | None) -> NoReturn:
        """Stores a bounded copy of a refused callback and raises Forbidden; RateLimited, with
        nothing stored, once its address is over RATE_LIMIT_REFUSED_CALLBACKS."""
        if self.rate_limits is not None:
            retry_after = await self.rate_limits.hit_refused_callback(source_ip or "unknown")
            if retry_after is not None:
                logger.debug("refused callback from %s over the limit, not stored", source_ip)
                raise RateLimited(
                    "Too many refused callbacks from your address "
                    f"(at most {self.rate_limits.refused_callbacks}); "
                    f"try again in {retry_after} s",
                    retry_after=retry_after,
                )
        delivery = CallbackDelivery.arrived(
            raw, source_ip, CallbackOutcome.REFUSED, detail=refusal, keep=REFUSED_BODY_BYTES
        )
        stored_as = await self._store_and_apply(delivery, None)
        logger.warning("callback %s from %s refused: %s", stored_as, source_ip, refusal)
        raise Forbidden("Callback refused")

    async def _store_and_apply(
        self, delivery: CallbackDelivery, callback: StkCallback | None
    ) -> str:
        """Stores the delivery, and applies `callback` if given; what it is known by in the
        logs (its callback log id, or its delivery id while it waits in the journal)."""
        try:
            callback_id = await store_delivery(self.sessionmaker, delivery)
            if callback is not None:
                await apply_callback(self.sessionmaker, callback_id, callback)
        except DATABASE_UNAVAILABLE as exc:
            await self._keep(delivery, exc)
            return f"{delivery.delivery_id} (journal)"
        return str(callback_id)

    async def _keep(self, delivery: CallbackDelivery, exc: Exception) -> None:
        """Keeps the delivery in the journal, or, if even that fails, logs its body (Daraja
        will not send it again) and raises the database's error."""
        try:
            await self.journal.keep_callback(delivery)
        except OSError:
            logger.exception(
                "callback %s for %s NOT STORED: neither the database (%s) nor the journal took "
                "it; its body: %s",
                delivery.delivery_id,
                delivery.checkout_request_id,
                exc,
                delivery.body.decode("utf-8", errors="replace"),
            )
            raise exc from None
        logger.warning(
            "database unavailable (%s: %s): callback %s for %s kept in the journal",
            type(exc).__name__,
            exc,
            delivery.delivery_id,
            delivery.checkout_request_id,
        )


async def store_delivery(sessionmaker: Sessionmaker, delivery: CallbackDelivery) -> int:
    """Stores a delivery as received in the callback log; its row's id."""
    async with sessionmaker() as session, session.begin():
        entry = await CallbackLogRepository(session).add(_log_row(delivery))
        return entry.callback_id


async def store_delivery_once(sessionmaker: Sessionmaker, delivery: CallbackDelivery) -> int:
    """Stores a delivery replayed from the journal, unless it was stored before (the failure
    came after its commit, or this is a second replay); its row's id."""
    async with sessionmaker() as session, session.begin():
        logs = CallbackLogRepository(session)
        entry = await logs.by_delivery_id(delivery.delivery_id)
        if entry is None:
            entry = await logs.add(_log_row(delivery))
        return entry.callback_id


def _log_row(delivery: CallbackDelivery) -> CallbackLog:
    return CallbackLog(
        delivery_id=delivery.delivery_id,
        body=delivery.body,
        body_size=delivery.body_size,
        body_sha256=delivery.body_sha256,
        source_ip=delivery.source_ip,
        checkout_request_id=delivery.checkout_request_id,
        outcome=delivery.outcome,
        detail=delivery.detail,
        received_at=delivery.received_at,
    )


async def apply_callback(
    sessionmaker: Sessionmaker, callback_id: int, callback: StkCallback
) -> None:
    """Applies a stored callback to its ticket, once however often called: only a row still
    `received` is applied (a replay of a delivery applied before changes nothing)."""
    result = payment_result(callback)
    now = utcnow()
    async with locked_transaction(sessionmaker) as session:
        entry = await CallbackLogRepository(session).get_for_update(callback_id)
        assert entry is not None
        if entry.outcome != CallbackOutcome.RECEIVED:
            return
        pushes = PushRequestRepository(session)
        push = await pushes.by_checkout_id(callback.CheckoutRequestID, for_update=True)
        if push is None:
            push = await _adopt_orphan(session, callback, result, now)
        if push is None:
            logger.warning(
                "callback %d for unknown CheckoutRequestID %s kept for later",
                callback_id,
                callback.CheckoutRequestID,
            )
            entry.outcome = CallbackOutcome.UNMATCHED
            return
        settlement = await settle(session, push.ticket_id, result, now, check_amount=True)
        _record(entry, push.ticket_id, settlement, now)


async def _adopt_orphan(
    session: AsyncSession,
    callback: StkCallback,
    result: PaymentResult,
    now: datetime,
) -> PushRequest | None:
    """A success for a push whose answer never came (timed out, or lost in a crash or an
    outage: Pending or Unconfirmed): the oldest such ticket with this phone and amount."""
    phone = metadata_text(callback.item("PhoneNumber"))
    amount = result.amount
    if not result.succeeded or phone is None or amount is None:
        return None
    # Only an amount a ticket can cost can match one (and only such an amount is sent on
    # to the database: the callback may say anything).
    if amount != amount.to_integral_value() or not 0 < amount <= PRICE_MAX:
        return None
    ticket = await TicketRepository(session).find_orphan(
        phone, int(amount), since=now - ORPHAN_WINDOW
    )
    if ticket is None:
        return None
    logger.warning(
        "callback %s matched by phone and amount to ticket %d (its push is not recorded)",
        callback.CheckoutRequestID,
        ticket.ticket_id,
    )
    return await PushRequestRepository(session).add(
        PushRequest(
            ticket_id=ticket.ticket_id,
            checkout_request_id=callback.CheckoutRequestID,
            # Only informative: cut to its column rather than refuse the payment.
            merchant_request_id=callback.MerchantRequestID[:MERCHANT_REQUEST_ID_LENGTH]
            if callback.MerchantRequestID
            else None,
            query_attempts=0,
        )
    )


def _record(entry: CallbackLog, ticket_id: int, settlement: Settlement, now: datetime) -> None:
    entry.outcome = _OUTCOMES[settlement]
    entry.ticket_id = ticket_id
    entry.detail = settlement.value
    entry.processed_at = now


async def record_pushes(session: AsyncSession, pushes: Sequence[NewPush]) -> list[PaymentStatus]:
    """Stores accepted pushes and applies callbacks that arrived before them.

    Returns each push's ticket status. Built for batches: one statement per step whatever
    their number; only the rare early callback is settled one at a time.
    """
    entries = await CallbackLogRepository(session).lock_for_checkout_ids(
        [push.checkout_request_id for push in pushes]
    )
    push_requests = PushRequestRepository(session)
    # A ticket whose push already has a row was matched by a callback by phone and amount.
    adopted = await push_requests.tickets_with_push([push.ticket_id for push in pushes])
    new = [push for push in pushes if push.ticket_id not in adopted]
    if new:
        await push_requests.add_many(new)
    ticket_of = {push.checkout_request_id: push.ticket_id for push in new}
    early = [
        entry
        for entry in entries
        if entry.outcome == CallbackOutcome.UNMATCHED and entry.checkout_request_id in ticket_of
    ]
    if early:
        await _apply_early(session, early, ticket_of)
    changed = adopted | {ticket_of[entry.checkout_request_id or ""] for entry in early}
    statuses = await TicketRepository(session).statuses(changed) if changed else {}
    return [PaymentStatus(statuses.get(push.ticket_id, PaymentStatus.PENDING)) for push in pushes]


async def _apply_early(
    session: AsyncSession, entries: list[CallbackLog], ticket_of: dict[str, int]
) -> None:
    tickets = [ticket_of[entry.checkout_request_id or ""] for entry in entries]
    movie_of = await TicketRepository(session).movie_ids(tickets)
    now = utcnow()
    # Movie rows are locked in one order (then each ticket's), whatever else this batch holds.
    for ticket_id, entry in sorted(
        zip(tickets, entries, strict=True),
        key=lambda pair: (movie_of.get(pair[0], 0), pair[0], pair[1].callback_id),
    ):
        callback = DarajaCallback.model_validate_json(entry.body).Body.stkCallback
        settlement = await settle(
            session, ticket_id, payment_result(callback), now, check_amount=True
        )
        logger.info("early callback %d applied: %s", entry.callback_id, settlement)
        _record(entry, ticket_id, settlement, now)
        # settle() reloads the movie and ticket rows it locks (populate_existing), which would
        # drop this settlement's changes if another one in the batch is for the same movie.
        await session.flush()
