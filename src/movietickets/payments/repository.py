"""Rows of payments: pushes sent to Daraja, callbacks received, idempotency keys, and the
reconciler's queries (due pushes, leases, orphaned tickets)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from movietickets.db.models import CallbackLog, IdempotencyKey, PaymentStatus, PushRequest, Ticket
from movietickets.kit.repository import RepositoryBase


@dataclass(frozen=True, slots=True)
class NewPush:
    """An STK push Daraja accepted, to store with its ticket."""

    ticket_id: int
    checkout_request_id: str
    merchant_request_id: str | None
    next_query_at: datetime
    created_at: datetime


class PushRequestRepository(RepositoryBase[PushRequest]):
    model = PushRequest

    async def by_checkout_id(
        self, checkout_request_id: str, *, for_update: bool = False
    ) -> PushRequest | None:
        statement = select(PushRequest).where(
            PushRequest.checkout_request_id == checkout_request_id
        )
        if for_update:
            # Also waits for a concurrent, not yet committed insert of the same id.
            statement = statement.with_for_update()
        return (await self.session.scalars(statement)).one_or_none()

    async def add_many(self, pushes: Sequence[NewPush]) -> None:
        """Core, no ORM objects."""
        rows = [
            {
                "ticketId": push.ticket_id,
                "checkoutRequestId": push.checkout_request_id,
                "merchantRequestId": push.merchant_request_id,
                "nextQueryAt": push.next_query_at,
                "queryAttempts": 0,
                "dateCreated": push.created_at,
                "lastUpdated": push.created_at,
            }
            for push in pushes
        ]
        # executemany on the connection: one cached statement whatever the batch size, sent
        # as one multi-row INSERT by the MySQL driver.
        connection = await self.session.connection()
        await connection.execute(insert(PushRequest), rows)

    async def for_ticket(self, ticket_id: int) -> PushRequest | None:
        statement = select(PushRequest).where(PushRequest.ticket_id == ticket_id)
        return (await self.session.scalars(statement)).one_or_none()

    async def tickets_with_push(self, ticket_ids: Collection[int]) -> set[int]:
        statement = select(PushRequest.ticket_id).where(PushRequest.ticket_id.in_(ticket_ids))
        return set((await self.session.scalars(statement)).all())


class CallbackLogRepository(RepositoryBase[CallbackLog]):
    model = CallbackLog

    async def by_delivery_id(self, delivery_id: str) -> CallbackLog | None:
        statement = select(CallbackLog).where(CallbackLog.delivery_id == delivery_id)
        return (await self.session.scalars(statement)).one_or_none()

    async def lock_for_checkout_ids(
        self, checkout_request_ids: Collection[str]
    ) -> list[CallbackLog]:
        """Every callback received for these pushes, locked, oldest first."""
        statement = (
            select(CallbackLog)
            .where(CallbackLog.checkout_request_id.in_(checkout_request_ids))
            .order_by(CallbackLog.callback_id)
            .with_for_update()
        )
        return list((await self.session.scalars(statement)).all())


class IdempotencyKeyRepository(RepositoryBase[IdempotencyKey]):
    model = IdempotencyKey

    async def add_new(self, row: IdempotencyKey) -> bool:
        """Inserts the key; False if another request inserted it first (the transaction is
        then unusable and must be ended)."""
        try:
            await self.add(row)
        except IntegrityError:
            return False
        return True

    async def complete(self, key: str, access_token: str, status_code: int, body: str) -> None:
        """Stores the answer of the attempt given `access_token` (not of one that took over)."""
        await self.session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == key, IdempotencyKey.access_token == access_token)
            .values(response_status=status_code, response_body=body)
        )

    async def delete_attempt(self, key: str, access_token: str) -> None:
        """Frees the key, if the attempt given `access_token` still holds it."""
        await self.session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.key == key, IdempotencyKey.access_token == access_token
            )
        )

    async def forget(self, row: IdempotencyKey) -> None:
        """An expired key: deleted, and its ticket's hold on it freed (it may be used again)."""
        await self.session.execute(
            update(Ticket)
            .where(Ticket.idempotency_key == row.key)
            .values(idempotency_key=None)
            .execution_options(synchronize_session=False)
        )
        await self.delete(row)

    async def purge_expired(self, now: datetime) -> None:
        """Deletes expired keys, and frees their tickets' hold on them."""
        expired = select(IdempotencyKey.key).where(IdempotencyKey.expires_at < now)
        await self.session.execute(
            update(Ticket)
            .where(Ticket.idempotency_key.in_(expired.scalar_subquery()))
            .values(idempotency_key=None)
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at < now))


class DuePush(NamedTuple):
    """A push the reconciler should ask Daraja about now."""

    push_id: int
    ticket_id: int
    checkout_request_id: str
    ticket_created: datetime
    query_attempts: int
    # The lease as read: the claim succeeds only if nobody has moved it since.
    next_query_at: datetime | None


class ReconciliationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def due_pushes(self, now: datetime, limit: int) -> list[DuePush]:
        statement = (
            select(
                PushRequest.push_request_id,
                PushRequest.ticket_id,
                PushRequest.checkout_request_id,
                Ticket.date_created,
                PushRequest.query_attempts,
                PushRequest.next_query_at,
            )
            .join(Ticket, Ticket.ticket_id == PushRequest.ticket_id)
            .where(
                PushRequest.next_query_at <= now,
                # Unconfirmed: a push recorded after its ticket became so (from the journal).
                Ticket.payment_status.in_((PaymentStatus.PENDING, PaymentStatus.UNCONFIRMED)),
            )
            .order_by(PushRequest.next_query_at)
            .limit(limit)
        )
        rows = await self.session.execute(statement)
        return [DuePush(*row) for row in rows.all()]

    async def claim(self, push: DuePush, lease_until: datetime) -> bool:
        """Takes the push if nobody else has since: the UPDATE matches only the lease we saw."""
        result = await self.session.execute(
            update(PushRequest)
            .where(
                PushRequest.push_request_id == push.push_id,
                PushRequest.next_query_at == push.next_query_at,
            )
            .values(next_query_at=lease_until, query_attempts=push.query_attempts + 1)
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0) == 1)

    async def schedule(self, push_id: int, next_query_at: datetime | None) -> None:
        await self.session.execute(
            update(PushRequest)
            .where(PushRequest.push_request_id == push_id)
            .values(next_query_at=next_query_at)
            .execution_options(synchronize_session=False)
        )

    async def orphans(self, created_before: datetime, limit: int) -> list[int]:
        statement = (
            select(Ticket.ticket_id)
            .where(
                Ticket.payment_status == PaymentStatus.PENDING,
                Ticket.date_created < created_before,
                ~exists().where(PushRequest.ticket_id == Ticket.ticket_id),
            )
            .order_by(Ticket.ticket_id)
            .limit(limit)
        )
        return list((await self.session.scalars(statement)).all())

    async def is_orphan(self, ticket_id: int) -> bool:
        statement = select(exists().where(PushRequest.ticket_id == ticket_id))
        return not await self.session.scalar(statement)
