"""Reports for operators: sales, tickets, payment anomalies. Admin token required."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from movietickets.admin.dependencies import ReportServiceDep
from movietickets.admin.schemas import Anomalies, SalesReport, TicketFilter, TicketPage
from movietickets.auth.dependencies import AdminDep
from movietickets.db.models import PaymentStatus
from movietickets.errors import REPORT_EXAMPLES, InvalidInput, error_responses
from movietickets.kit.phone import InvalidPhoneNumber, normalize_msisdn
from movietickets.kit.types import DIGITS_ONLY, MAX_ROW_ID, UtcDateTime

router = APIRouter(prefix="/api/admin", tags=["admin"])

Since = Annotated[
    UtcDateTime | None,
    Query(
        alias="from",
        description="Tickets created at or after this time (ISO 8601, years 2000 to 2100).",
    ),
]
Until = Annotated[
    UtcDateTime | None,
    Query(alias="to", description="Tickets created before this time (years 2000 to 2100)."),
]


@router.get(
    "/sales",
    operation_id="getSalesReport",
    summary="Per movie: seats paid and held, revenue, failed and cancelled purchases",
    responses=error_responses(401, 422, examples=REPORT_EXAMPLES),
)
async def sales(
    reports: ReportServiceDep, _: AdminDep, since: Since = None, until: Until = None
) -> SalesReport:
    return await reports.sales(since, until)


@router.get(
    "/tickets",
    operation_id="listTickets",
    summary="Tickets, newest first, filtered and paginated",
    responses=error_responses(401, 422, examples=REPORT_EXAMPLES),
)
async def tickets(
    reports: ReportServiceDep,
    _: AdminDep,
    movie_id: Annotated[
        int | None, Query(alias="movieId", ge=1, le=MAX_ROW_ID), DIGITS_ONLY
    ] = None,
    status: Annotated[PaymentStatus | None, Query()] = None,
    phone: Annotated[str | None, Query(max_length=32, description="Any usual form.")] = None,
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> TicketPage:
    try:
        phone_number = normalize_msisdn(phone) if phone is not None else None
    except InvalidPhoneNumber as exc:
        raise InvalidInput("query.phone", str(exc)) from None
    where = TicketFilter(
        movie_id=movie_id, status=status, phone_number=phone_number, since=since, until=until
    )
    return await reports.tickets(where, limit, offset)


@router.get(
    "/anomalies",
    operation_id="listPaymentAnomalies",
    summary="Refunds due, amount mismatches, callbacks that matched no ticket, stuck tickets",
    responses=error_responses(401),
)
async def anomalies(reports: ReportServiceDep, _: AdminDep) -> Anomalies:
    return await reports.anomalies()
