"""4-byte characters on every database: utf8mb4 pinned by the migrations and the connection,
and a database that cannot store them refused at startup."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.schema import CreateTable

from movietickets import cli
from movietickets.app import create_app
from movietickets.db import migrations
from movietickets.db.base import Base
from movietickets.db.charset import UnicodeStorageError, check_unicode_storage
from movietickets.db.engine import create_engine, create_sessionmaker
from tests.conftest import admin_client, loopback_app, make_settings, mariadb_database
from tests.helpers import create_movie

NAME = "Wanjirũ 😀"


async def buy_and_read_back(client: httpx.AsyncClient, name: str) -> dict[str, Any]:
    movie = await create_movie(client, title="Sinema 🎬 ya Jioni")
    order = {"movieId": movie["movieId"], "customerName": name, "phoneNumber": "0712349003"}
    bought = await client.post("/api/make-payment", json={**order, "quantity": 1})
    assert bought.status_code == 200, bought.text
    headers = {"X-Ticket-Token": bought.json()["ticketAccessToken"]}
    response = await client.get(f"/api/tickets/{bought.json()['ticketId']}", headers=headers)
    assert response.status_code == 200, response.text
    ticket: dict[str, Any] = response.json()["ticket"]
    return ticket


async def test_a_name_with_4_byte_characters_is_stored_and_read_back(
    client: httpx.AsyncClient,
) -> None:
    ticket = await buy_and_read_back(client, NAME)
    assert ticket["customerName"] == NAME
    assert ticket["movie"]["title"] == "Sinema 🎬 ya Jioni"


@pytest.fixture
async def latin1_url() -> AsyncIterator[str]:
    """A MariaDB database created as latin1, as `CREATE DATABASE movies` is on many servers."""
    async with mariadb_database("CHARACTER SET latin1 COLLATE latin1_swedish_ci") as url:
        yield url


async def migrate(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(migrations.upgrade, make_settings(url), revision)


async def other_charsets(engine: AsyncEngine) -> list[tuple[str, str, str]]:
    async with engine.connect() as connection:
        rows = await connection.execute(
            text(
                "SELECT TABLE_NAME, COLUMN_NAME, CHARACTER_SET_NAME FROM information_schema.COLUMNS"
                " WHERE TABLE_SCHEMA = DATABASE() AND CHARACTER_SET_NAME IS NOT NULL"
                " AND CHARACTER_SET_NAME <> 'utf8mb4' AND TABLE_NAME <> 'alembic_version'"
            )
        )
        return [tuple(row) for row in rows.all()]


async def test_a_latin1_database_is_converted_and_stores_any_name(latin1_url: str) -> None:
    await migrate(latin1_url, "0001")
    # Text stored before the conversion is re-encoded, not lost.
    before = create_async_engine(latin1_url)
    try:
        async with before.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO movie (title, showTime, price, max_tickets, seatsPaid,"
                    " dateCreated, lastUpdated) VALUES ('Café Zoë', '2030-01-01', 100, 10, 0,"
                    " '2026-01-01', '2026-01-01')"
                )
            )
    finally:
        await before.dispose()
    await migrate(latin1_url)
    settings = make_settings(latin1_url)
    engine = create_engine(settings)
    try:
        assert await other_charsets(engine) == []
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT title FROM movie")) == "Café Zoë"
            default = await connection.scalar(text("SELECT @@character_set_database"))
        assert default == "utf8mb4"  # tables added by later migrations too
        async with loopback_app(settings) as app:
            transport = httpx.ASGITransport(app=app)
            async with admin_client(
                create_sessionmaker(engine), settings, transport=transport, base_url="http://t"
            ) as client:
                ticket = await buy_and_read_back(client, NAME)
        assert ticket["customerName"] == NAME
    finally:
        await engine.dispose()


async def test_a_database_that_cannot_store_them_is_refused_at_startup(
    latin1_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await migrate(latin1_url, "0001")
    settings = make_settings(latin1_url)
    engine = create_engine(settings)
    try:
        with pytest.raises(UnicodeStorageError) as refused:
            await check_unicode_storage(engine)
    finally:
        await engine.dispose()
    message = str(refused.value)
    assert "4-byte characters" in message
    assert "latin1" in message
    assert "movietickets migrate" in message
    assert "\n" not in message

    with pytest.raises(UnicodeStorageError):
        async with LifespanManager(create_app(settings)):
            pass
    assert any(record.getMessage() == f"refusing to start: {message}" for record in caplog.records)

    await migrate(latin1_url)
    async with LifespanManager(create_app(settings)):
        pass


async def test_prepare_refuses_a_table_left_in_latin1(
    latin1_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    await migrate(latin1_url)
    engine = create_async_engine(latin1_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text("ALTER TABLE ticket MODIFY customerName VARCHAR(255) CHARACTER SET latin1")
            )
    finally:
        await engine.dispose()
    for name, value in {
        "DATABASE_URL": latin1_url,
        "ENVIRONMENT": "test",
        "SEED_SAMPLE_MOVIES": "false",
        "LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as refused:
        await asyncio.to_thread(cli.main, ["prepare"])
    assert refused.value.code == 1
    assert capsys.readouterr().err.strip() == (
        "movietickets prepare: refusing to start: the database cannot store 4-byte characters"
        " such as emoji: column ticket.customerName is latin1; run `movietickets migrate`"
        " (it converts the tables to utf8mb4), or ALTER TABLE ... CONVERT TO CHARACTER SET"
        " utf8mb4 COLLATE utf8mb4_unicode_ci"
    )


async def test_a_migrated_database_passes_the_check(engine: AsyncEngine) -> None:
    await check_unicode_storage(engine)


def test_tables_created_from_the_models_are_utf8mb4_whatever_the_default() -> None:
    for table in Base.metadata.sorted_tables:
        ddl = str(CreateTable(table).compile(dialect=mysql.dialect()))
        assert "CHARSET=utf8mb4 COLLATE utf8mb4_unicode_ci" in ddl, table.name
