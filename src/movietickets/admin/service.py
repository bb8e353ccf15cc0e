"""Sales, ticket listings and payment anomalies for admins."""

from __future__ import annotations

from datetime import datetime, timedelta

from movietickets.admin.repository import ReportRepository
from movietickets.admin.schemas import (
    Anomalies,
    CallbackRecord,
    MovieSales,
    SalesReport,
    TicketFilter,
    TicketPage,
)
from movietickets.db.engine import AsyncSession
from movietickets.db.models import CallbackLog, CallbackOutcome
from movietickets.kit.clock import utcnow
from movietickets.settings import Settings
from movietickets.tickets.schemas import TicketPublic

ANOMALY_LIMIT = 200


def _callback(entry: CallbackLog) -> CallbackRecord:
    return CallbackRecord(
        callbackId=entry.callback_id,
        checkoutRequestId=entry.checkout_request_id,
        ticketId=entry.ticket_id,
        outcome=entry.outcome,
        detail=entry.detail,
        sourceIp=entry.source_ip,
        receivedAt=entry.received_at,
        body=entry.body.decode("utf-8", errors="replace"),
        bodySize=entry.body_size,
        bodySha256=entry.body_sha256,
    )


class ReportService:
    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.reports = ReportRepository(session)
        self.settings = settings

    async def sales(self, since: datetime | None, until: datetime | None) -> SalesReport:
        rows = await self.reports.sales(utcnow(), since, until)
        movies = [
            MovieSales(
                movieId=row.movie.movie_id,
                title=row.movie.title,
                showTime=row.movie.show_time,
                max_tickets=row.movie.max_tickets,
                seatsPaid=row.seats_paid,
                seatsHeld=row.seats_held,
                revenue=row.revenue,
                paidPurchases=row.paid,
                failedPurchases=row.failed,
                cancelledPurchases=row.cancelled,
                refundsDue=row.refunds_due,
            )
            for row in rows
        ]
        return SalesReport(
            movies=movies,
            totalRevenue=sum(m.revenue for m in movies),
            totalSeatsPaid=sum(m.seatsPaid for m in movies),
        )

    async def tickets(self, where: TicketFilter, limit: int, offset: int) -> TicketPage:
        rows, total = await self.reports.tickets(where, limit, offset)
        return TicketPage(
            tickets=[TicketPublic.from_models(ticket, movie) for ticket, movie in rows],
            total=total,
            limit=limit,
            offset=offset,
        )

    async def anomalies(self) -> Anomalies:
        give_up = timedelta(seconds=self.settings.reconcile_give_up_seconds)
        refunds = await self.reports.refunds_due(ANOMALY_LIMIT)
        stuck = await self.reports.stuck_pending(utcnow() - give_up, ANOMALY_LIMIT)
        unconfirmed = await self.reports.unconfirmed(ANOMALY_LIMIT)
        mismatches = await self.reports.callbacks(CallbackOutcome.AMOUNT_MISMATCH, ANOMALY_LIMIT)
        unmatched = await self.reports.callbacks(CallbackOutcome.UNMATCHED, ANOMALY_LIMIT)
        duplicates = await self.reports.callbacks(CallbackOutcome.DUPLICATE_RECEIPT, ANOMALY_LIMIT)
        return Anomalies(
            refundsDue=[TicketPublic.from_models(t, m) for t, m in refunds],
            amountMismatches=[_callback(entry) for entry in mismatches],
            unmatchedCallbacks=[_callback(entry) for entry in unmatched],
            duplicateReceipts=[_callback(entry) for entry in duplicates],
            stuckPending=[TicketPublic.from_models(t, m) for t, m in stuck],
            unconfirmed=[TicketPublic.from_models(t, m) for t, m in unconfirmed],
        )
