"""Fixtures: every database test runs on SQLite and on MariaDB, each in a database of its own.

MariaDB is expected on 127.0.0.1:3306 (root, empty password), or at MARIADB_TEST_URL. When it
cannot be reached the MariaDB half is skipped, except under CI=true, where that fails the run.
"""

from __future__ import annotations

import asyncio
import functools
import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from starlette.types import Receive, Scope, Send

from movietickets.app import create_app
from movietickets.auth.repository import AdminRepository
from movietickets.auth.service import issue_token, password_hasher
from movietickets.db import migrations
from movietickets.db.base import Base
from movietickets.db.engine import create_engine, create_sessionmaker
from movietickets.db.models import Admin
from movietickets.settings import Settings

MARIADB_SERVER_URL = os.environ.get("MARIADB_TEST_URL", "mysql+asyncmy://root@127.0.0.1:3306")
IN_CI = os.environ.get("CI", "").lower() == "true"
TEST_JWT_KEY = "test-signing-key-0123456789abcdef0123456789abcdef"
ADMIN_USERNAME = "test-admin"
ADMIN_PASSWORD = "correct horse battery staple"
# Apps built by tests keep their journals under here (one directory each, made when first
# written to), never in the working directory.
TEST_JOURNALS = Path(tempfile.mkdtemp(prefix="movietickets-test-journals-"))


@functools.cache
def _admin_password_hash() -> str:
    # Argon2 is slow on purpose: hash the test password once per run.
    return password_hasher.hash(ADMIN_PASSWORD)


async def admin_headers(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> dict[str, str]:
    """Adds the test admin (if missing) and returns headers carrying a token for it."""
    async with sessionmaker() as session, session.begin():
        if await AdminRepository(session).by_username(ADMIN_USERNAME) is None:
            session.add(Admin(username=ADMIN_USERNAME, password_hash=_admin_password_hash()))
    token = issue_token(ADMIN_USERNAME, settings).access_token
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def admin_client(
    sessionmaker: async_sessionmaker[AsyncSession], settings: Settings, **options: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client signed in as the test admin (most tests manage movies)."""
    headers = await admin_headers(sessionmaker, settings)
    async with httpx.AsyncClient(headers=headers, **options) as client:
        yield client


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "environment": "test",
        "seed_sample_movies": False,
        "rate_limit_enabled": False,  # tests that want limits turn them on
        # Nor do the bounds on unpaid seats apply (every test client has one address).
        "max_held_seats_per_phone": 0,
        "max_held_seats_per_address": 0,
        "log_level": "WARNING",
        "public_base_url": "http://testserver",
        "simulator_callback_delay_seconds": 0.05,
        "reconcile_in_service": False,
        "jwt_secret_key": TEST_JWT_KEY,
        "journal_dir": TEST_JOURNALS / uuid.uuid4().hex,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


async def _create_mariadb_database(name: str, options: str = "") -> None:
    engine = create_async_engine(f"{MARIADB_SERVER_URL}/")
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"CREATE DATABASE `{name}` {options}"))
    finally:
        await engine.dispose()


@asynccontextmanager
async def mariadb_database(options: str = "") -> AsyncIterator[str]:
    """The URL of a new, empty MariaDB database (not migrated), dropped afterwards; skipped
    without MariaDB (a failure under CI=true). `options`: e.g. `CHARACTER SET latin1`."""
    name = f"mt_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        await _create_mariadb_database(name, options)
    except Exception as exc:
        message = f"MariaDB not reachable at {MARIADB_SERVER_URL}: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield f"{MARIADB_SERVER_URL}/{name}"
    finally:
        await _drop_mariadb_database(name)


async def _drop_mariadb_database(name: str) -> None:
    engine = create_async_engine(f"{MARIADB_SERVER_URL}/")
    try:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session", params=["sqlite", "mariadb"])
async def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A freshly migrated database (`alembic upgrade head`) for the whole session."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("db") / "movietickets.db"
        url = f"sqlite+aiosqlite:///{path}"
        await asyncio.to_thread(migrations.upgrade, make_settings(url))
        yield url
        return
    name = f"mt_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        await _create_mariadb_database(name)
    except Exception as exc:
        message = f"MariaDB not reachable at {MARIADB_SERVER_URL}: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    url = f"{MARIADB_SERVER_URL}/{name}"
    try:
        await asyncio.to_thread(migrations.upgrade, make_settings(url))
        yield url
    finally:
        await _drop_mariadb_database(name)


@pytest.fixture
def backend(database_url: str) -> str:
    return "sqlite" if database_url.startswith("sqlite") else "mariadb"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """An engine on the session's database; every table is emptied after each test."""
    engine = create_engine(settings)
    yield engine
    async with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            await connection.execute(table.delete())
    await engine.dispose()


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@asynccontextmanager
async def loopback_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The running app; its outgoing HTTP (to the mounted Daraja simulator, and the
    simulator's callbacks) is routed back into the app in-process."""
    holder: list[FastAPI] = []

    async def loopback(scope: Scope, receive: Receive, send: Send) -> None:
        await holder[0](scope, receive, send)

    application = create_app(settings, http_transport=httpx.ASGITransport(app=loopback))
    holder.append(application)
    async with LifespanManager(application):
        yield application


@pytest.fixture
async def app(settings: Settings, engine: AsyncEngine) -> AsyncIterator[FastAPI]:
    async with loopback_app(settings) as application:
        yield application


@pytest.fixture
async def anonymous_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client without credentials."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


@pytest.fixture
async def client(
    app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with admin_client(
        sessionmaker, settings, transport=transport, base_url="http://testserver"
    ) as client:
        yield client
