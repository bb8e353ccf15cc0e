"""`Idempotency-Key` for make-payment, as Stripe and the IETF draft define it, made to
survive crashes: a key never has more than one ticket, and so never more than one push.

The first request with a key reserves it (a row in the database, shared by every instance)
and runs; its answer is stored and replayed to later requests with the same key and the same
body for 24 hours. The same key with another body is refused (422). Answers that created no
ticket (validation errors, sold out) are not stored, so the client may retry with the key.

The Pending ticket is written with its key (`ticket.idempotencyKey`, unique) by the very
INSERT that holds the seats, so a retry whose first attempt never answered (its process
died, or lost its database) finds what that attempt left behind:

    no ticket       409 in use (Retry-After) while the first attempt may still be running;
                    after that it died before holding seats, and the key runs again (an
                    attempt that was only stalled cannot add a ticket: the key is unique)
    a push row      200, rebuilt from the ticket: its CheckoutRequestID and current status
    no push row     409 in use while the first attempt may still be waiting for Daraja;
                    then 504 payment_outcome_unknown with the ticketId, as for a push that
                    timed out (never a second push); 200 once the push is recorded (from the
                    journal) or a callback is matched to the ticket
    Failed, no push 502: the push was refused, the ticket cancelled

A stored 504 (Daraja did not answer, or the push could not be recorded) is not final
either: once the ticket has its push row, the retry gets the 200. Rebuilt answers carry
`Idempotent-Replayed: true` like stored ones.
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
    PaymentOutcomeUnknown,
    PaymentProviderError,
)
from movietickets.kit.clock import utcnow
from movietickets.payments.repository import IdempotencyKeyRepository, PushRequestRepository
from movietickets.payments.schemas import PaymentInitiated
from movietickets.settings import Settings
from movietickets.tickets.privacy import new_access_token, token_hash
from movietickets.tickets.repository import TicketRepository

logger = logging.getLogger(__name__)

KEY_LIFETIME = timedelta(hours=24)
# Daraja's own words for an accepted push (its answer is not stored, only its ids).
PUSH_ACCEPTED = "Success. Request accepted for processing"


def in_flight_seconds(settings: Settings) -> float:
    """How long a first attempt may still be running: waiting for a pooled connection, then
    the OAuth token and the push, each up to Daraja's connect and read timeouts.

    It only decides between 409 and 504 (or running the key again when no ticket exists):
    past it, no second ticket or push can come from the key either way.
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
    body = json.dumps(error.body().model_dump(mode="json", exclude_none=True)).encode()
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
        except IdempotencyKeyInUse:
            raise  # another attempt holds the key's ticket: the key is its, not ours to free
        except AppError as exc:
            if "ticketId" in exc.extra:
                await self._complete(reserved, _error_response(exc))
            else:  # no ticket holds the key: it may run again
                await self._release(reserved)
            raise
        # Anything else (the database lost, the request cancelled) leaves the key reserved:
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
            stored = (
                None
                if row.response_status is None or row.response_body is None
                else StoredResponse(row.response_status, row.response_body.encode())
            )
            if stored is not None and stored.status_code != PaymentOutcomeUnknown.status_code:
                return stored
            # The first attempt has not answered (it is still running, or it died), or its
            # answer was that the outcome is unknown: the ticket may know more by now.
            ticket = await TicketRepository(session).by_idempotency_key(row.key)
            if ticket is None:
                if stored is not None:
                    return stored
                if row.created_at > now - self.in_flight:
                    raise _in_use()
                logger.warning("Idempotency-Key %r: its first attempt died before a ticket", key)
                row.created_at = now
                row.access_token = new_access_token()
                return Attempt(key, row.access_token)
            push = await PushRequestRepository(session).for_ticket(ticket.ticket_id)
            if stored is not None and push is None:
                return stored
            status = ticket.payment_status
            if push is not None:
                # A push row committed after the ticket was read came with a settlement (a
                # callback matched to the ticket): the status is read again, after the push.
                status = (await TicketRepository(session).statuses([ticket.ticket_id]))[
                    ticket.ticket_id
                ]
            answer, final = self._from_ticket(row, ticket, push, status, now)
            if final:
                row.response_status, row.response_body = answer.status_code, answer.body.decode()
            return answer

    def _from_ticket(
        self,
        row: IdempotencyKey,
        ticket: Ticket,
        push: PushRequest | None,
        status: PaymentStatus,
        now: datetime,
    ) -> tuple[StoredResponse, bool]:
        """The first attempt's answer, rebuilt from its ticket (whose status is `status`), and
        whether it is final."""
        ticket_id = ticket.ticket_id
        if push is not None:
            # The attempt's secret, unless the ticket is another attempt's (one that ran while
            # this key was taken over): then none, rather than one that opens nothing.
            token = row.access_token or ""
            if token and token_hash(token) != ticket.access_token_hash:
                token = ""
            answer = PaymentInitiated(
                ticketId=ticket_id,
                checkoutRequestId=push.checkout_request_id,
                responseDescription=PUSH_ACCEPTED,
                paymentStatus=status,
                ticketAccessToken=token,
            )
            return StoredResponse(200, answer.model_dump_json().encode()), True
        if status == PaymentStatus.FAILED:
            refused = PaymentProviderError(
                f"The payment request was not accepted; ticket {ticket_id} was cancelled",
                ticketId=ticket_id,
            )
            return _error_response(refused), True
        if status == PaymentStatus.PENDING and ticket.date_created > now - self.in_flight:
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
            # The client still gets its answer; retries rebuild it from the ticket.
            logger.warning("Idempotency-Key %r: answer not stored: %s", attempt.key, exc)

    async def _release(self, attempt: Attempt) -> None:
        try:
            async with self.sessionmaker() as session, session.begin():
                await IdempotencyKeyRepository(session).delete_attempt(
                    attempt.key, attempt.access_token
                )
        except DATABASE_UNAVAILABLE as exc:
            # The key stays reserved; once the in-flight time has passed a retry runs it.
            logger.warning("Idempotency-Key %r: not released: %s", attempt.key, exc)
