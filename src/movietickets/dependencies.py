"""FastAPI dependencies: the per-request transaction and the services built on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from movietickets.daraja.client import DarajaClient
from movietickets.db.models import Admin
from movietickets.errors import StaleCredentials, Unauthorized
from movietickets.ratelimit import RateLimits
from movietickets.services.auth import AuthService
from movietickets.services.callbacks import CallbackService
from movietickets.services.catalogue_cache import CatalogueCache
from movietickets.services.idempotency import IdempotencyService
from movietickets.services.movies import MovieService
from movietickets.services.payment_status import PaymentStatusService
from movietickets.services.purchases import PurchaseService
from movietickets.services.push_records import PushRecords
from movietickets.services.reports import ReportService
from movietickets.services.seat_holds import SeatHolds
from movietickets.services.tickets import TicketService
from movietickets.settings import Settings


@dataclass(slots=True)
class Resources:
    """What the lifespan creates once per process and closes on shutdown."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    http: httpx.AsyncClient
    daraja: DarajaClient
    catalogue: CatalogueCache
    seat_holds: SeatHolds
    push_records: PushRecords
    rate_limits: RateLimits | None = None  # None: RATE_LIMIT_ENABLED=false


# Every dependency is `async def`, even those that never await: FastAPI runs a plain `def`
# dependency in its thread pool, a thread hop per dependency on every request.
async def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


async def get_session(resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed before the response is sent."""
    async with resources.sessionmaker() as session, session.begin():
        yield session


# scope="function": the commit runs when the endpoint returns, not after the response.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_movie_service(session: SessionDep, resources: ResourcesDep) -> MovieService:
    return MovieService(session, resources.catalogue.changed)


MovieServiceDep = Annotated[MovieService, Depends(get_movie_service)]


# The catalogue's read routes use no session at all: they answer from the cache. Read straight
# from the request: one dependency less to solve on the busiest routes.
async def get_catalogue(request: Request) -> CatalogueCache:
    catalogue: CatalogueCache = request.app.state.resources.catalogue
    return catalogue


CatalogueDep = Annotated[CatalogueCache, Depends(get_catalogue)]


async def get_ticket_service(session: SessionDep) -> TicketService:
    return TicketService(session)


TicketServiceDep = Annotated[TicketService, Depends(get_ticket_service)]


# The payment services run several short transactions of their own (never one held across a
# call to Daraja), so they get the sessionmaker rather than the request's session.
async def get_purchase_service(resources: ResourcesDep) -> PurchaseService:
    return PurchaseService(
        resources.sessionmaker,
        resources.daraja,
        resources.settings,
        resources.seat_holds,
        resources.push_records,
        resources.rate_limits,
    )


PurchaseServiceDep = Annotated[PurchaseService, Depends(get_purchase_service)]


async def get_idempotency_service(resources: ResourcesDep) -> IdempotencyService:
    return IdempotencyService(resources.sessionmaker)


IdempotencyServiceDep = Annotated[IdempotencyService, Depends(get_idempotency_service)]


async def get_payment_status_service(resources: ResourcesDep) -> PaymentStatusService:
    return PaymentStatusService(resources.sessionmaker, resources.daraja)


PaymentStatusServiceDep = Annotated[PaymentStatusService, Depends(get_payment_status_service)]


async def get_callback_service(resources: ResourcesDep) -> CallbackService:
    return CallbackService(resources.sessionmaker, resources.settings)


CallbackServiceDep = Annotated[CallbackService, Depends(get_callback_service)]


# auto_error=False: a missing token is answered in the one error shape by `require_admin`.
oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)


async def get_auth_service(session: SessionDep, resources: ResourcesDep) -> AuthService:
    return AuthService(session, resources.settings)


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]


async def optional_admin(
    auth: AuthServiceDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Admin | None:
    return None if token is None else await auth.authenticate(token)


async def require_admin(admin: Annotated[Admin | None, Depends(optional_admin)]) -> Admin:
    if admin is None:
        raise Unauthorized()
    return admin


async def viewing_admin(
    auth: AuthServiceDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> Admin | None:
    """For public reads that show more to an admin: a stale token reads as no token at all."""
    try:
        return None if token is None else await auth.authenticate(token)
    except StaleCredentials:
        return None


AdminDep = Annotated[Admin, Depends(require_admin)]
ViewingAdminDep = Annotated[Admin | None, Depends(viewing_admin)]


async def get_report_service(session: SessionDep, resources: ResourcesDep) -> ReportService:
    return ReportService(session, resources.settings)


ReportServiceDep = Annotated[ReportService, Depends(get_report_service)]
