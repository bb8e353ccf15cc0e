"""Read-only queries behind the admin reports."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Select, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from movietickets.admin.schemas import TicketFilter
from movietickets.db.models import CallbackLog, CallbackOutcome, Movie, PaymentStatus, Ticket


class MovieSalesRow(NamedTuple):
    """One movie's figures over the tickets in the report's period."""

    movie: Movie
    seats_paid: int
    seats_held: int
    revenue: int
    paid: int
    failed: int
    cancelled: int
    refunds_due: int


class ReportRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def sales(
        self, now: datetime, since: datetime | None, until: datetime | None
    ) -> list[MovieSalesRow]:
        paid = Ticket.payment_status == PaymentStatus.PAID
        failed = Ticket.payment_status == PaymentStatus.FAILED
        held = and_(Ticket.payment_status == PaymentStatus.PENDING, Ticket.hold_expires_at > now)
        conditions = [Ticket.movie_id == Movie.movie_id]
        if since is not None:
            conditions.append(Ticket.date_created >= since)
        if until is not None:
            conditions.append(Ticket.date_created < until)

        def total(condition: ColumnElement[bool], value: Any = 1) -> ColumnElement[int]:
            return func.coalesce(func.sum(case((condition, value), else_=0)), 0)

        statement = (
            select(
                Movie,
                total(paid, Ticket.quantity),
                total(held, Ticket.quantity),
                total(paid, Ticket.total_amount),
                total(paid),
                total(failed),
                total(and_(failed, Ticket.result_code == "1032")),
                total(Ticket.needs_refund.is_(True)),
            )
            .outerjoin(Ticket, and_(*conditions))
            .group_by(Movie.movie_id)
            .order_by(Movie.movie_id)
        )
        rows = await self.session.execute(statement)
        return [
            MovieSalesRow(movie, *(int(figure) for figure in figures))
            for movie, *figures in rows.all()
        ]

    async def tickets(
        self, where: TicketFilter, limit: int, offset: int
    ) -> tuple[list[tuple[Ticket, Movie]], int]:
        statement = select(Ticket)
        if where.movie_id is not None:
            statement = statement.where(Ticket.movie_id == where.movie_id)
        if where.status is not None:
            statement = statement.where(Ticket.payment_status == where.status)
        if where.phone_number is not None:
            statement = statement.where(Ticket.phone_number == where.phone_number)
        if where.since is not None:
            statement = statement.where(Ticket.date_created >= where.since)
        if where.until is not None:
            statement = statement.where(Ticket.date_created < where.until)
        filtered = statement.subquery()
        total = await self.session.scalar(select(func.count()).select_from(filtered))
        page = (
            select(Ticket, Movie)
            .join(Movie, Movie.movie_id == Ticket.movie_id)
            .where(Ticket.ticket_id.in_(select(filtered.c.ticketId)))
            .order_by(Ticket.ticket_id.desc())
            .limit(limit)
            .offset(offset)
        )
        rows = (await self.session.execute(page)).all()
        return [(ticket, movie) for ticket, movie in rows], int(total or 0)

    async def refunds_due(self, limit: int) -> list[tuple[Ticket, Movie]]:
        return await self._with_movies(select(Ticket).where(Ticket.needs_refund.is_(True)), limit)

    async def stuck_pending(
        self, created_before: datetime, limit: int
    ) -> list[tuple[Ticket, Movie]]:
        statement = select(Ticket).where(
            Ticket.payment_status == PaymentStatus.PENDING, Ticket.date_created < created_before
        )
        return await self._with_movies(statement, limit)

    async def unconfirmed(self, limit: int) -> list[tuple[Ticket, Movie]]:
        statement = select(Ticket).where(Ticket.payment_status == PaymentStatus.UNCONFIRMED)
        return await self._with_movies(statement, limit)

    async def _with_movies(
        self, statement: Select[Ticket], limit: int
    ) -> list[tuple[Ticket, Movie]]:
        rows = await self.session.execute(
            statement.add_columns(Movie)
            .join(Movie, Movie.movie_id == Ticket.movie_id)
            .order_by(Ticket.ticket_id.desc())
            .limit(limit)
        )
        return [(ticket, movie) for ticket, movie in rows.all()]

    async def callbacks(self, outcome: CallbackOutcome, limit: int) -> Sequence[CallbackLog]:
        statement = (
            select(CallbackLog)
            .where(CallbackLog.outcome == outcome)
            .order_by(CallbackLog.callback_id.desc())
            .limit(limit)
        )
        return (await self.session.scalars(statement)).all()
