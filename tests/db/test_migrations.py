"""The migrations are the schema: they go up and down on both backends and match the models."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from movietickets.db import migrations
from movietickets.db.base import Base
from movietickets.settings import Settings


async def test_models_match_migrations(engine: AsyncEngine) -> None:
    def diff(connection: Connection) -> list[object]:
        context = MigrationContext.configure(connection)
        return list(compare_metadata(context, Base.metadata))

    async with engine.connect() as connection:
        assert await connection.run_sync(diff) == []


async def test_indexes_for_every_lookup(engine: AsyncEngine) -> None:
    def indexes(connection: Connection) -> dict[str, list[list[str | None]]]:
        inspector = inspect(connection)
        found: dict[str, list[list[str | None]]] = {}
        for table in ("ticket", "pushrequest", "movie"):
            found[table] = [list(ix["column_names"]) for ix in inspector.get_indexes(table)]
            found[table] += [
                list(uq["column_names"]) for uq in inspector.get_unique_constraints(table)
            ]
        return found

    async with engine.connect() as connection:
        found = await connection.run_sync(indexes)
    assert ["movieId", "paymentStatus", "holdExpiresAt"] in found["ticket"]
    assert ["checkoutRequestId"] in found["pushrequest"]


async def test_downgrade_to_base_and_back(settings: Settings, engine: AsyncEngine) -> None:
    def tables(connection: Connection) -> set[str]:
        return set(inspect(connection).get_table_names()) - {"alembic_version"}

    await asyncio.to_thread(migrations.downgrade, settings, "base")
    async with engine.connect() as connection:
        assert await connection.run_sync(tables) == set()
    await asyncio.to_thread(migrations.upgrade, settings, "head")
    async with engine.connect() as connection:
        assert await connection.run_sync(tables) == set(Base.metadata.tables)


async def test_downgrading_0004_keeps_the_tickets_and_drops_what_it_added(
    settings: Settings, engine: AsyncEngine
) -> None:
    def ticket_columns(connection: Connection) -> set[str]:
        return {column["name"] for column in inspect(connection).get_columns("ticket")}

    now = datetime.now(UTC).replace(tzinfo=None)
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO movie (movieId, title, showTime, price, max_tickets, seatsPaid, "
                "dateCreated, lastUpdated) VALUES (1, 'Kept', :now, 100, 10, 0, :now, :now)"
            ),
            {"now": now},
        )
        await connection.execute(
            text(
                "INSERT INTO ticket (movieId, customerName, phoneNumber, quantity, totalAmount, "
                "paymentStatus, holdExpiresAt, needsRefund, clientAddress, dateCreated, "
                "lastUpdated) VALUES (1, 'Jane', '254712345678', 1, 100, 'Pending', :now, 0, "
                "'203.0.113.7', :now, :now)"
            ),
            {"now": now},
        )
    await asyncio.to_thread(migrations.downgrade, settings, "0001")
    try:
        async with engine.connect() as connection:
            assert "clientAddress" not in await connection.run_sync(ticket_columns)
            tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
            assert "signincount" not in tables
            count = await connection.scalar(text("SELECT COUNT(*) FROM ticket"))
            assert count == 1
    finally:
        await asyncio.to_thread(migrations.upgrade, settings, "head")
    async with engine.connect() as connection:
        assert "clientAddress" in await connection.run_sync(ticket_columns)
        assert await connection.scalar(text("SELECT clientAddress FROM ticket")) is None
