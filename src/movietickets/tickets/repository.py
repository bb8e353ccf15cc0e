"""Ticket rows: Pending tickets inserted in batches, seats held, lookups for settlement."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import case, delete, func, insert, or_, select, update
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
    client_address: str | None = None
    idempotency_key: str | None = None


class IdempotencyKeyTaken(Exception):
    """An inserted ticket's Idempotency-Key is another ticket's already (the transaction is
    unusable and must be ended)."""


@dataclass(frozen=True, slots=True)
class SeatsHeld:
    """Seats of a showing's live holds: all of them, and those of some phones and addresses."""

    total: int = 0
    by_phone: Counter[str] = field(default_factory=Counter)
    by_address: Counter[str] = field(default_factory=Counter)


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
                "clientAddress": ticket.client_address,
                "idempotencyKey": ticket.idempotency_key,
                "dateCreated": ticket.created_at,
                "lastUpdated": ticket.created_at,
            }
            for ticket in tickets
        ]
        try:
            return await self._insert(rows)
        except IntegrityError as exc:
            # SQLite names the column, MySQL/MariaDB the constraint (uq_ticket_idempotencyKey).
            if "idempotencyKey" in str(exc.orig):
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

    async def receipt_holder(self, receipt_number: str, *, excluding: int) -> int | None:
        """The ticket other than `excluding` that already carries this receipt number."""
        statement = select(Ticket.ticket_id).where(
            Ticket.mpesa_receipt_number == receipt_number, Ticket.ticket_id != excluding
        )
        return (await self.session.scalars(statement.limit(1))).one_or_none()

    async def take_receipt(self, ticket_id: int, receipt_number: str) -> bool:
        """Writes the receipt number on the ticket; False if another ticket holds it.

        The unique constraint decides, also against a concurrent transaction writing the same
        number (MySQL makes this one wait for it, then refuses). The write is in a savepoint,
        so that a refusal leaves the transaction and its row locks as they were.
        """
        try:
            async with self.session.begin_nested():
                await self.session.execute(
                    update(Ticket)
                    .where(Ticket.ticket_id == ticket_id)
                    .values(mpesa_receipt_number=receipt_number)
                    .execution_options(synchronize_session=False)
                )
        except IntegrityError:
            return False
        return True

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

    async def seats_held_by(
        self,
        movie_id: int,
        now: datetime,
        phones: Collection[str],
        addresses: Collection[str],
    ) -> SeatsHeld:
        """`held_seats`, and how many of them these phones and these addresses hold, in the
        same one range scan: the live holds are grouped by phone (if one of `phones`, else
        none) and address (likewise), so a few rows come back however many holds there are."""
        phone = case((Ticket.phone_number.in_(phones), Ticket.phone_number), else_=None)
        address = case((Ticket.client_address.in_(addresses), Ticket.client_address), else_=None)
        holds = (
            select(phone.label("phone"), address.label("address"), Ticket.quantity)
            .where(
                Ticket.movie_id == movie_id,
                Ticket.payment_status == PaymentStatus.PENDING,
                Ticket.hold_expires_at > now,
            )
            .subquery()
        )
        statement = select(holds.c.phone, holds.c.address, func.sum(holds.c.quantity)).group_by(
            holds.c.phone, holds.c.address
        )
        total, by_phone, by_address = 0, Counter[str](), Counter[str]()
        for held_phone, held_address, seats in await self.session.execute(statement):
            total += int(seats)
            if held_phone is not None:
                by_phone[held_phone] += int(seats)
            if held_address is not None:
                by_address[held_address] += int(seats)
        return SeatsHeld(total, by_phone, by_address)

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
