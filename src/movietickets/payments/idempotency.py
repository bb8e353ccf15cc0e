"""`Idempotency-Key` for make-payment, as Stripe and the IETF draft define it, made to
survive crashes: a key never has more than one ticket, and so never more than one push.

The first request with a key reserves it (a row in the database, shared by every instance)
and runs; its answer is stored and replayed to later requests with the same key and the same
body for 24 hours. The same key with another body is refused (422). Answers that created no
ticket (validation errors, sold out) are not stored, so the client may retry with the key.

The Pending ticket is written with its key (`ticket.idempotencyKey`, unique) by the very
INSERT that holds the seats, so a retry whose first attempt never answered (its process
died, or lost its database) finds what that attempt left behind:

    no ticket yet   409 in use (Retry-After) while the first attempt may still be running;
                    after that it died before holding seats, and the key runs again (an
                    attempt that was only stalled cannot add a ticket: the key is unique)
    a push row      200, rebuilt from the ticket: its CheckoutRequestID and current status
    no push row     409 in use while the first attempt may still be waiting for Daraja;
                    then 504 payment_outcome_unknown with the ticketId, as for a push that
                    timed out (never a second push); 200 once the push is recorded from the
                    journal or a callback is matched to the ticket
    Failed, no push 502: the push was refused, the ticket cancelled

Rebuilt answers carry `Idempotent-Replayed: true` like stored ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import BaseModel

from movietickets.db.engine import DATABASE_UNAVAILABLE, Sessionmaker, locked_transaction
from movietickets.db.models import IdempotencyKey, PaymentStatus, PushRequest, Ticket
from movietickets.errors import (
    AppError,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    PaymentNotRecorded,
    PaymentOutcomeUnknown,
    PaymentProviderError,
)
from movietickets.kit.clock import utcnow
from movietickets.payments.repository import IdempotencyKeyRepository, PushRequestRepository
from movietickets.payments.schemas import PaymentInitiated
from movietickets.settings import Settings
from movietickets.tickets.privacy import new_access_token
from movietickets.tickets.repository import TicketRepository

logger = logging.getLogger(__name__)

KEY_LIFETIME = timedelta(hours=24)
# Daraja's own words for an accepted push (its answer is not stored, only its ids).
PUSH_ACCEPTED = "Success. Request accepted for processing"


def in_flight_seconds(settings: Settings) -> float:
    """How long a first attempt may still be running: waiting for a pooled connection, then
    the OAuth token and the push, each up to Daraja's connect and read timeouts.

    It only decides between 409 and 504 for a retry: past it, no second ticket or push can
    come from the key either way.
    """
    daraja_call = settings.mpesa_connect_timeout_seconds + settings.mpesa_read_timeout_seconds
    return settings.db_pool_timeout_seconds + 2 * daraja_call + 1


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status_code: int
    body: bytes


@dataclass(frozen=True, slots=True)
class Attempt:
    """The running attempt of a key: the ticket it creates is given this access token."""

    key: str
    access_token: str


def fingerprint(request: BaseModel) -> str:
    return hashlib.sha256(request.model_dump_json().encode()).hexdigest()


def _error_response(error: AppError) -> StoredResponse:
    body = json.dumps(error.body().model_dump(exclude_none=True)).encode()
    return StoredResponse(error.status_code, body)


def _in_use() -> IdempotencyKeyInUse:
    return IdempotencyKeyInUse(
        "A request with this Idempotency-Key is still being processed", retry_after=1
    )


class IdempotencyService:
    def __init__(self, sessionmaker: Sessionmaker, settings: Settings) -> None:
        self.sessionmaker = sessionmaker
        self.in_flight = timedelta(seconds=in_flight_seconds(settings))

    async def run(
        self,
        key: str,
        request: BaseModel,
        operation: Callable[[Attempt], Awaitable[PaymentInitiated]],
    ) -> PaymentInitiated | StoredResponse:
        """Runs `operation` once per key; later calls get the stored or rebuilt answer."""
        reserved = await self._reserve(key, fingerprint(request))
        if isinstance(reserved, StoredResponse):
            return reserved
        try:
            result = await operation(reserved)
        except PaymentNotRecorded:
            raise  # the push went out: retries answer from the ticket once it is recorded
        except AppError as exc:
            if "ticketId" in exc.extra:
                await self._complete(reserved, _error_response(exc))
            else:  # no ticket holds the key: it may run again
                await self._release(reserved)
            raise
        # Anything else (the database lost, the request cancelled) leaves the key as it is:
        # the next retry resolves it from the ticket, if there is one.
        await self._complete(reserved, StoredResponse(200, result.model_dump_json().encode()))
        return result

    async def _reserve(self, key: str, request_hash: str) -> Attempt | StoredResponse:
        now = utcnow()
        async with locked_transaction(self.sessionmaker) as session:
            keys = IdempotencyKeyRepository(session)
            row = await keys.get_for_update(key)
            if row is not None and row.expires_at <= now:
                await keys.forget(row)
                row = None
            if row is None:
                attempt = Attempt(key, new_access_token())
                reserved = await keys.add_new(
                    IdempotencyKey(
                        key=key,
                        request_hash=request_hash,
                        access_token=attempt.access_token,
                        created_at=now,
                        expires_at=now + KEY_LIFETIME,
                    )
                )
                if not reserved:  # another instance inserted the same key a moment ago
                    raise _in_use()
                return attempt
            if row.request_hash != request_hash:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was used with a different request body"
                )
            if row.response_status is not None and row.response_body is not None:
                return StoredResponse(row.response_status, row.response_body.encode())
            # The first attempt has not answered: it is still running, or it died.
            ticket = await TicketRepository(session).by_idempotency_key(key)
            if ticket is None:
                if row.created_at > now - self.in_flight:
                    raise _in_use()
                logger.warning("Idempotency-Key %r: first attempt died before a ticket", key)
                row.created_at = now
                row.access_token = new_access_token()
                return Attempt(key, row.access_token)
            push = await PushRequestRepository(session).for_ticket(ticket.ticket_id)
            answer, final = self._from_ticket(row, ticket, push, now)
            if final:
                row.response_status, row.response_body = answer.status_code, answer.body.decode()
            return answer

    def _from_ticket(
        self, row: IdempotencyKey, ticket: Ticket, push: PushRequest | None, now: datetime
    ) -> tuple[StoredResponse, bool]:
        """The first attempt's answer, rebuilt from its ticket, and whether it is final."""
        ticket_id = ticket.ticket_id
        if push is not None:
            answer = PaymentInitiated(
                ticketId=ticket_id,
                checkoutRequestId=push.checkout_request_id,
                responseDescription=PUSH_ACCEPTED,
                paymentStatus=ticket.payment_status,
                ticketAccessToken=row.access_token or "",
            )
            return StoredResponse(200, answer.model_dump_json().encode()), True
        if ticket.payment_status == PaymentStatus.FAILED:
            refused = PaymentProviderError(
                f"The payment request was not accepted; ticket {ticket_id} was cancelled",
                ticketId=ticket_id,
            )
            return _error_response(refused), True
        if ticket.payment_status == PaymentStatus.PENDING and (
            ticket.date_created > now - self.in_flight
        ):
            raise _in_use()
        unknown = PaymentOutcomeUnknown(
            f"M-Pesa's answer to the payment request for ticket {ticket_id} was not received; "
            "the customer may have been prompted. Do not pay again: the ticket is settled when "
            "M-Pesa reports the result",
            ticketId=ticket_id,
        )
        return _error_response(unknown), False

    async def _complete(self, attempt: Attempt, answer: StoredResponse) -> None:
        try:
            async with self.sessionmaker() as session, session.begin():
                await IdempotencyKeyRepository(session).complete(
                    attempt.key, attempt.access_token, answer.status_code, answer.body.decode()
                )
        except DATABASE_UNAVAILABLE as exc:
            # Retries rebuild the answer from the ticket instead.
            logger.warning("Idempotency-Key %r: answer not stored: %s", attempt.key, exc)

    async def _release(self, attempt: Attempt) -> None:
        try:
            async with self.sessionmaker() as session, session.begin():
                await IdempotencyKeyRepository(session).delete_attempt(
                    attempt.key, attempt.access_token
                )
        except DATABASE_UNAVAILABLE as exc:
            # The key stays reserved; after the in-flight time a retry runs it again.
            logger.warning("Idempotency-Key %r: not released: %s", attempt.key, exc)
