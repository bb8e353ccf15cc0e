"""The process's resources (created by the app's lifespan) and the per-request transaction.

Each feature builds its services on these in its own `dependencies.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import httpx
from fastapi import Depends, Request

from movietickets.catalogue.cache import CatalogueCache
from movietickets.daraja.client import DarajaClient
from movietickets.db.engine import (
    AsyncEngine,
    AsyncSession,
    Sessionmaker,
    locked_transaction,
    read_transaction,
)
from movietickets.kit.ratelimit import RateLimits
from movietickets.payments.journal import PaymentJournal
from movietickets.payments.pushes import PushRecords
from movietickets.payments.seat_holds import SeatHolds
from movietickets.settings import Settings


@dataclass(slots=True)
class Resources:
    """What the lifespan creates once per process and closes on shutdown."""

    settings: Settings
    engine: AsyncEngine
    sessionmaker: Sessionmaker
    http: httpx.AsyncClient
    daraja: DarajaClient
    catalogue: CatalogueCache
    seat_holds: SeatHolds
    push_records: PushRecords
    journal: PaymentJournal
    rate_limits: RateLimits | None = None  # None: RATE_LIMIT_ENABLED=false


# Every dependency is `async def`, even those that never await: FastAPI runs a plain `def`
# dependency in its thread pool, a thread hop per dependency on every request.
async def get_resources(request: Request) -> Resources:
    resources: Resources = request.app.state.resources
    return resources


ResourcesDep = Annotated[Resources, Depends(get_resources)]


# Requests that never write: their transaction reads beside the writer (see db/engine.py).
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_session(request: Request, resources: ResourcesDep) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed before the response is sent.

    On SQLite a write request's transaction takes the write lock at BEGIN, before the admin's
    row is read, so that its write cannot fail because a purchase or the reconciler committed
    meanwhile; a read request's does not, so reads run beside the writers.
    """
    transaction = read_transaction if request.method in READ_METHODS else locked_transaction
    async with transaction(resources.sessionmaker) as session:
        yield session


# scope="function": the commit runs when the endpoint returns, not after the response.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
