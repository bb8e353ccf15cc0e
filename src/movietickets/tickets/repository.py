"""Ticket rows: Pending tickets inserted in batches, seats held, lookups for settlement."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, or_, select
from sqlalchemy.exc import IntegrityError

from movietickets.db.models import Movie, PaymentStatus, PushRequest, Ticket
from movietickets.kit.repository import RepositoryBase


@dataclass(frozen=True, slots=True)
class NewTicket:
    """A Pending ticket to insert, holding its seats until `hold_expires_at`."""

    movie_id: int
    customer_name: str
    phone_number: str
    quantity: int
    total_amount: int
    hold_expires_at: datetime
    created_at: datetime
    access_token_hash: str | None = None
    idempotency_key: str | None = None


class IdempotencyKeyTaken(Exception):
    """An inserted ticket's Idempotency-Key belongs to another ticket already (the
    transaction is unusable and must be ended)."""


class TicketRepository(RepositoryBase[Ticket]):
    model = Ticket

    async def add_pending(self, tickets: list[NewTicket]) -> list[int]:
        """Inserts Pending tickets in one statement (Core, no ORM objects); their ids in order.

        Where the database cannot return the ids of a multi-row INSERT (MySQL has no
        RETURNING), one INSERT per ticket. Raises IdempotencyKeyTaken when a ticket's
        Idempotency-Key is another ticket's already.
        """
        rows = [
            {
                "movieId": ticket.movie_id,
                "customerName": ticket.customer_name,
                "phoneNumber": ticket.phone_number,
                "quantity": ticket.quantity,
                "totalAmount": ticket.total_amount,
                "paymentStatus": PaymentStatus.PENDING.value,
                "holdExpiresAt": ticket.hold_expires_at,
                "needsRefund": False,
                "accessTokenHash": ticket.access_token_hash,
                "idempotencyKey": ticket.idempotency_key,
                "dateCreated": ticket.created_at,
                "lastUpdated": ticket.created_at,
            }
            for ticket in tickets
        ]
        try:
            return await self._insert(rows)
        except IntegrityError as exc:
            # The only unique column a new ticket can collide on (the id is the database's).
            if any(ticket.idempotency_key is not None for ticket in tickets):
                raise IdempotencyKeyTaken from exc
            raise

    async def _insert(self, rows: Sequence[Mapping[str, object]]) -> list[int]:
        connection = await self.session.connection()
        if connection.dialect.insert_executemany_returning_sort_by_parameter_order:
            statement = insert(Ticket).returning(Ticket.ticket_id, sort_by_parameter_order=True)
            return list((await connection.execute(statement, rows)).scalars())
        ids = []
        for row in rows:
            key = (await connection.execute(insert(Ticket), row)).inserted_primary_key
            assert key is not None
            ids.append(int(key[0]))
        return ids

    async def by_idempotency_key(self, key: str) -> Ticket | None:
        statement = select(Ticket).where(Ticket.idempotency_key == key)
        return (await self.session.scalars(statement)).one_or_none()

    async def get_with_movie(self, ticket_id: int) -> tuple[Ticket, Movie] | None:
        """The ticket and its movie in one round trip (buyers poll this while they pay)."""
        statement = (
            select(Ticket, Movie)
            .join(Movie, Movie.movie_id == Ticket.movie_id)
            .where(Ticket.ticket_id == ticket_id)
        )
        row = (await self.session.execute(statement)).one_or_none()
        return None if row is None else (row[0], row[1])

    async def held_seats(
        self, movie_id: int, now: datetime, *, excluding: int | None = None
    ) -> int:
        """Seats of Pending tickets whose hold has not expired (a range scan on the index)."""
        statement = select(func.coalesce(func.sum(Ticket.quantity), 0)).where(
            Ticket.movie_id == movie_id,
            Ticket.payment_status == PaymentStatus.PENDING,
            Ticket.hold_expires_at > now,
        )
        if excluding is not None:
            statement = statement.where(Ticket.ticket_id != excluding)
        return int(await self.session.scalar(statement) or 0)

    async def count_blocking_deletion(self, movie_id: int) -> int:
        """Tickets that must outlive their movie: Paid, Pending, Unconfirmed, or owed a refund."""
        statement = select(func.count()).where(
            Ticket.movie_id == movie_id,
            or_(Ticket.payment_status != PaymentStatus.FAILED, Ticket.needs_refund.is_(True)),
        )
        return int(await self.session.scalar(statement) or 0)

    async def delete_for_movie(self, movie_id: int) -> None:
        ids = select(Ticket.ticket_id).where(Ticket.movie_id == movie_id).scalar_subquery()
        await self.session.execute(delete(PushRequest).where(PushRequest.ticket_id.in_(ids)))
        await self.session.execute(delete(Ticket).where(Ticket.movie_id == movie_id))

    async def statuses(self, ticket_ids: Collection[int]) -> dict[int, PaymentStatus]:
        statement = select(Ticket.ticket_id, Ticket.payment_status).where(
            Ticket.ticket_id.in_(ticket_ids)
        )
        return {ticket_id: status for ticket_id, status in await self.session.execute(statement)}

    async def movie_ids(self, ticket_ids: Collection[int]) -> dict[int, int]:
        statement = select(Ticket.ticket_id, Ticket.movie_id).where(
            Ticket.ticket_id.in_(ticket_ids)
        )
        return {
            ticket_id: movie_id for ticket_id, movie_id in await self.session.execute(statement)
        }

    async def find_orphan(
        self, phone_number: str, amount: int, *, since: datetime
    ) -> Ticket | None:
        """The oldest ticket for this phone and amount whose push never got an answer."""
        statement = (
            select(Ticket)
            .outerjoin(PushRequest, PushRequest.ticket_id == Ticket.ticket_id)
            .where(
                PushRequest.push_request_id.is_(None),
                Ticket.phone_number == phone_number,
                Ticket.total_amount == amount,
                Ticket.result_code.is_(None),
                Ticket.payment_status != PaymentStatus.PAID,
                Ticket.date_created >= since,
            )
            .order_by(Ticket.ticket_id)
            .limit(1)
        )
        return (await self.session.scalars(statement)).one_or_none()
