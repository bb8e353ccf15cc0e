"""Queries of the reconciler: due pushes, leases, orphaned tickets, expired keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from movietickets.db.models import IdempotencyKey, PaymentStatus, PushRequest, Ticket

# push id, ticket id, CheckoutRequestID, ticket created, query attempts, lease seen
DuePush = tuple[int, int, str, datetime, int, datetime | None]


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
                Ticket.payment_status == PaymentStatus.PENDING,
            )
            .order_by(PushRequest.next_query_at)
            .limit(limit)
        )
        rows = await self.session.execute(statement)
        return [(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows.all()]

    async def claim(self, push: DuePush, lease_until: datetime) -> bool:
        """Takes the push if nobody else has since: the UPDATE matches only the lease we saw."""
        push_id, *_, attempts, seen = push
        result = await self.session.execute(
            update(PushRequest)
            .where(PushRequest.push_request_id == push_id, PushRequest.next_query_at == seen)
            .values(next_query_at=lease_until, query_attempts=attempts + 1)
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

    async def purge_idempotency_keys(self, now: datetime) -> None:
        await self.session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at < now))
