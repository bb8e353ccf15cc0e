"""The application factory and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi_offline
import httpx
from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse
from fastapi_offline import FastAPIOffline
from pydantic.json_schema import models_json_schema

from movietickets import __version__, health
from movietickets.admin import endpoints as admin
from movietickets.auth import endpoints as auth
from movietickets.auth.service import with_signing_key
from movietickets.catalogue import endpoints as catalogue
from movietickets.catalogue.cache import CatalogueCache
from movietickets.daraja.callback import DarajaCallback
from movietickets.daraja.setup import SIMULATOR_MOUNT, build_daraja
from movietickets.daraja.setup import check_settings as check_daraja_settings
from movietickets.daraja.transport import asyncio_transport
from movietickets.db.charset import UnicodeStorageError, check_unicode_storage
from movietickets.db.engine import (
    DATABASE_UNAVAILABLE,
    AsyncEngine,
    create_engine,
    create_sessionmaker,
)
from movietickets.dependencies import Resources
from movietickets.errors import RESPONSE_HEADERS, header_ref, install_exception_handlers
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
from movietickets.payments.seat_holds import HoldBounds, SeatHolds
from movietickets.settings import Settings
from movietickets.tickets import endpoints as tickets

logger = logging.getLogger(__name__)

DESCRIPTION = """
Sell cinema and event tickets paid with M-Pesa (Lipa Na M-Pesa Online / STK Push).

Every error is answered with the same JSON shape: `{"error": "...", "code": "..."}`
(plus `details` for invalid fields). Times are ISO 8601 in UTC with a `Z`.

Writes (POST, PUT, PATCH, DELETE) are rate limited per client address: over the limit, the
answer is 429 with `Retry-After` (seconds). Daraja's callbacks with the right secret are
never limited; refused ones are, per address.
"""

TAGS = [
    {"name": "movies", "description": "The movie catalogue."},
    {"name": "tickets", "description": "Buying tickets and reading them."},
    {"name": "payments", "description": "M-Pesa STK Push payments and Daraja's callback."},
    {"name": "auth", "description": "Admin sign-in (Swagger UI: the Authorize button)."},
    {"name": "admin", "description": "Reports for operators (admin token required)."},
    {"name": "system", "description": "Welcome message and health probes."},
]

# The docs are served from the app (fastapi-offline), but ReDoc's bundle draws Redocly's logo
# from their CDN, which the docs' content security policy refuses: an empty image instead.
DOCS_STATIC = "/static-offline-docs"
REDOC_BUNDLE = Path(fastapi_offline.__file__).parent / "static" / "redoc.standalone.js"
REDOC_CDN_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
EMPTY_IMAGE = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"

HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def create_app(
    settings: Settings | None = None, *, http_transport: httpx.AsyncBaseTransport | None = None
) -> FastAPI:
    """`http_transport` replaces the network for outgoing calls (tests route them in-process)."""
    settings = settings or Settings()
    settings.check_can_serve()
    check_daraja_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        await _refuse_a_database_without_utf8mb4(engine)
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
            settings=await with_signing_key(sessionmaker, settings),
            engine=engine,
            sessionmaker=sessionmaker,
            http=http,
            daraja=daraja,
            rate_limits=rate_limits,
            catalogue=CatalogueCache(sessionmaker),
            seat_holds=SeatHolds(
                sessionmaker,
                hold_seconds=settings.seat_hold_seconds,
                bounds=HoldBounds(
                    per_phone=settings.max_held_seats_per_phone,
                    per_address=settings.max_held_seats_per_address,
                ),
            ),
            push_records=PushRecords(
                sessionmaker,
                journal,
                first_query_seconds=settings.reconcile_first_query_seconds,
                journal_after_seconds=settings.journal_push_after_seconds,
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
        license_info={"name": "MIT", "identifier": "MIT"},
        # Relative: Swagger UI and generated clients call the host that served the document.
        servers=[{"url": "/", "description": "This service"}],
        # Not Swagger UI's default, a badge image from validator.swagger.io given the
        # document's URL.
        swagger_ui_parameters={"validatorUrl": None},
        redoc_url=None,  # served below, with a bundle that loads nothing from elsewhere
        lifespan=lifespan,
    )
    _serve_redoc(app)
    install_exception_handlers(app)
    routers = (health, catalogue, tickets, payments, auth, admin)
    for router in (module.router for module in routers):
        app.include_router(router)
    _document_raw_bodies(app)
    _document_conventions(app)

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


@functools.cache
def _redoc_bundle() -> bytes:
    return REDOC_BUNDLE.read_bytes().replace(REDOC_CDN_LOGO, EMPTY_IMAGE)


def _serve_redoc(app: FastAPI) -> None:
    """`/redoc` as fastapi-offline serves it, but with `_redoc_bundle`."""

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_STATIC}/favicon.png",
            with_google_fonts=False,
        )

    @app.get("/redoc/redoc.standalone.js", include_in_schema=False)
    async def redoc_bundle() -> Response:
        return Response(
            _redoc_bundle(),
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=3600"},
        )


async def _refuse_a_database_without_utf8mb4(engine: AsyncEngine) -> None:
    """Startup fails on a database that cannot store 4-byte characters (one clear log line).

    A database that cannot be reached is not a reason to stay down: the service answers 503
    until it is back (and `movietickets prepare` checks again before every `serve`).
    """
    try:
        await check_unicode_storage(engine)
    except DATABASE_UNAVAILABLE as exc:
        logger.warning("database unreachable at startup, character set not checked: %s", exc)
    except UnicodeStorageError as exc:
        logger.error("refusing to start: %s", exc)
        await engine.dispose()
        raise


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


def _document_conventions(app: FastAPI) -> None:
    """What holds for every operation, declared once: the response headers, `X-Request-ID` on
    every answer, and `security: []` on the operations anyone may call."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema["components"]["headers"] = dict(RESPONSE_HEADERS)
            for item in schema["paths"].values():
                for method, operation in item.items():
                    if method not in HTTP_METHODS:
                        continue
                    operation.setdefault("security", [])
                    for response in operation["responses"].values():
                        response.setdefault("headers", {})["X-Request-ID"] = header_ref(
                            "X-Request-ID"
                        )
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
