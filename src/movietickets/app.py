"""The application factory and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline
from pydantic.json_schema import models_json_schema

from movietickets import __version__, health
from movietickets.admin import endpoints as admin
from movietickets.auth import endpoints as auth
from movietickets.catalogue import endpoints as catalogue
from movietickets.catalogue.cache import CatalogueCache
from movietickets.daraja.callback import DarajaCallback
from movietickets.daraja.setup import SIMULATOR_MOUNT, build_daraja
from movietickets.daraja.setup import check_settings as check_daraja_settings
from movietickets.daraja.transport import asyncio_transport
from movietickets.db.engine import create_engine, create_sessionmaker
from movietickets.dependencies import Resources
from movietickets.errors import install_exception_handlers
from movietickets.kit.journal import Journal
from movietickets.kit.ratelimit import RateLimits
from movietickets.middleware.access_log import AccessLogMiddleware
from movietickets.middleware.body_size import BodySizeLimitMiddleware
from movietickets.middleware.client_address import ClientAddressMiddleware
from movietickets.middleware.cors import cors_options
from movietickets.middleware.security_headers import install_security_headers
from movietickets.middleware.write_rate_limit import WriteRateLimitMiddleware
from movietickets.observability import configure_logging
from movietickets.payments import endpoints as payments
from movietickets.payments.journal import PaymentJournal
from movietickets.payments.pushes import PushRecords
from movietickets.payments.reconciler import Reconciler
from movietickets.payments.recovery import JournalReplayer
from movietickets.payments.seat_holds import SeatHolds
from movietickets.settings import Settings
from movietickets.tickets import endpoints as tickets

DESCRIPTION = """
Sell cinema and event tickets paid with M-Pesa (Lipa Na M-Pesa Online / STK Push).

Every error is answered with the same JSON shape: `{"error": "...", "code": "..."}`
(plus `details` for invalid fields). Times are ISO 8601 in UTC with a `Z`.

Writes (POST, PUT, PATCH, DELETE) are rate limited per client address: over the limit, the
answer is 429 with `Retry-After` (seconds). Daraja's callbacks are never limited.
"""

TAGS = [
    {"name": "movies", "description": "The movie catalogue."},
    {"name": "tickets", "description": "Buying tickets and reading them."},
    {"name": "payments", "description": "M-Pesa STK Push payments and Daraja's callback."},
    {"name": "auth", "description": "Admin sign-in (Swagger UI: the Authorize button)."},
    {"name": "admin", "description": "Reports for operators (admin token required)."},
    {"name": "system", "description": "Welcome message and health probes."},
]


def create_app(
    settings: Settings | None = None, *, http_transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """`http_transport` replaces the network for outgoing calls (tests route them in-process)."""
    settings = settings or Settings()
    check_daraja_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        http = httpx.AsyncClient(
            timeout=httpx.Timeout(
                settings.mpesa_read_timeout_seconds, connect=settings.mpesa_connect_timeout_seconds
            ),
            transport=http_transport
            or asyncio_transport(httpx.Limits(max_connections=100, max_keepalive_connections=20)),
        )
        daraja, simulator = build_daraja(settings, http)
        rate_limits = RateLimits.from_settings(settings)
        if simulator is not None:
            app.mount(SIMULATOR_MOUNT, simulator.app)
        sessionmaker = create_sessionmaker(engine)
        journal = PaymentJournal(Journal(settings.journal_dir))
        app.state.resources = Resources(
            settings=settings,
            engine=engine,
            sessionmaker=sessionmaker,
            http=http,
            daraja=daraja,
            rate_limits=rate_limits,
            catalogue=CatalogueCache(sessionmaker),
            seat_holds=SeatHolds(sessionmaker, hold_seconds=settings.seat_hold_seconds),
            push_records=PushRecords(
                sessionmaker,
                first_query_seconds=settings.reconcile_first_query_seconds,
                journal=journal,
            ),
            journal=journal,
        )
        # In every process: what it (or a process before it) kept while the database was away.
        replayer = asyncio.create_task(
            JournalReplayer(journal, sessionmaker, settings).run_forever()
        )
        reconciler = (
            asyncio.create_task(
                Reconciler(app.state.resources.sessionmaker, daraja, settings).run_forever()
            )
            if settings.reconcile_in_service
            else None
        )
        try:
            yield
        finally:
            if simulator is not None:  # first: its callbacks in flight still need the app
                await simulator.aclose()
            for task in (reconciler, replayer):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await app.state.resources.seat_holds.aclose()
            await app.state.resources.push_records.aclose()
            journal.close()
            await app.state.resources.catalogue.aclose()
            await http.aclose()
            if rate_limits is not None:
                await rate_limits.aclose()
            await engine.dispose()

    app = FastAPIOffline(
        title="movietickets",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
    )
    install_exception_handlers(app)
    routers = (health, catalogue, tickets, payments, auth, admin)
    for router in (module.router for module in routers):
        app.include_router(router)
    _document_raw_bodies(app)

    # Added last = outermost: request ids, CORS, client address, write rate limit, size
    # limit, then the access log.
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.rate_limit_enabled:  # RATE_LIMIT_WRITES per client address (429)
        app.add_middleware(WriteRateLimitMiddleware)
    if settings.trusted_proxies:  # the client's address from X-Forwarded-For of our proxies
        app.add_middleware(ClientAddressMiddleware, trusted_proxies=settings.trusted_proxies)
    if settings.cors_origins:  # browsers on CORS_ORIGINS may call the API (none by default)
        app.add_middleware(CORSMiddleware, **cors_options(settings.cors_origins))
    app.add_middleware(CorrelationIdMiddleware, header_name="X-Request-ID")
    # Outside all of them, so that even the 500 of an unexpected exception has the headers.
    install_security_headers(app, hsts=settings.environment == "production")
    return app


def _document_raw_bodies(app: FastAPI) -> None:
    """Adds the schemas of bodies that routes read raw (the callback) to the OpenAPI document."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            _, definitions = models_json_schema(
                [(DarajaCallback, "validation")], ref_template="#/components/schemas/{model}"
            )
            schema["components"]["schemas"].update(definitions["$defs"])
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]


def create_app_from_env() -> FastAPI:
    """Entry point for `uvicorn --factory` (used by `movietickets serve`)."""
    settings = Settings()
    configure_logging(settings.log_level)
    app = create_app(settings)
    # Everything imported and built so far lives as long as the process: left out of garbage
    # collection, a full collection no longer walks its few hundred thousand objects (a pause
    # of tens of milliseconds under load, straight into p99).
    gc.freeze()
    return app
