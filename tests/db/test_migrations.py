"""The migrations are the schema: they go up and down on both backends and match the models."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from movietickets.db import migrations
from movietickets.db.base import Base
from movietickets.db.models import CallbackLog, CallbackOutcome
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


async def test_callback_bodies_survive_0002_both_ways(
    settings: Settings, engine: AsyncEngine
) -> None:
    """0002 turns stored bodies into their UTF-8 bytes; its downgrade turns them back into
    text (bytes that are not UTF-8 replaced, a body too long for a TEXT cut to fit)."""
    insert = text(
        "INSERT INTO callbacklog (body, outcome, receivedAt) VALUES (:body, 'malformed', :at)"
    )
    at = datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None)
    await asyncio.to_thread(migrations.downgrade, settings, "0001")
    async with engine.begin() as connection:
        await connection.execute(insert, {"body": "café 😀", "at": at})
    await asyncio.to_thread(migrations.upgrade, settings, "head")
    async with AsyncSession(engine) as session:
        [old] = (await session.scalars(select(CallbackLog))).all()
        assert (old.body, old.body_size, old.body_sha256) == ("café 😀".encode(), None, None)
        session.add_all(
            [
                CallbackLog(body=b"ok \xff\xfe", outcome=CallbackOutcome.MALFORMED),
                CallbackLog(body="😀".encode() * 20_000, outcome=CallbackOutcome.MALFORMED),
            ]
        )
        await session.commit()

    await asyncio.to_thread(migrations.downgrade, settings, "0001")
    async with engine.connect() as connection:
        bodies = (await connection.scalars(text("SELECT body FROM callbacklog ORDER BY 1"))).all()
    await asyncio.to_thread(migrations.upgrade, settings, "head")
    assert sorted(bodies) == sorted(["café 😀", "ok \ufffd\ufffd", "😀" * (65_535 // 4)])


async def test_0002_stops_before_any_change_on_a_receipt_on_two_tickets(
    settings: Settings, engine: AsyncEngine
) -> None:
    await asyncio.to_thread(migrations.downgrade, settings, "0001")
    at = datetime(2026, 1, 1, tzinfo=UTC).replace(tzinfo=None)
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO movie (movieId, title, showTime, price, max_tickets, seatsPaid,"
                " dateCreated, lastUpdated) VALUES (1, 'T', :at, 100, 10, 0, :at, :at)"
            ),
            {"at": at},
        )
        for receipt in ("RCPT1", "RCPT1 ", "rcpt1", None, None):
            await connection.execute(
                text(
                    "INSERT INTO ticket (movieId, customerName, phoneNumber, quantity,"
                    " totalAmount, paymentStatus, mpesaReceiptNumber, holdExpiresAt,"
                    " needsRefund, dateCreated, lastUpdated) VALUES (1, 'A', '254712345678', 1,"
                    " 100, 'Paid', :receipt, :at, 0, :at, :at)"
                ),
                {"receipt": receipt, "at": at},
            )
    with pytest.raises(RuntimeError) as refused:
        await asyncio.to_thread(migrations.upgrade, settings, "head")
    assert "receipt RCPT1 on tickets 1, 2" in str(refused.value)
    assert "rcpt1" not in str(refused.value)  # another receipt: compared byte for byte
    assert "Nothing was changed" in str(refused.value)
    async with engine.connect() as connection:
        assert await connection.scalar(text("SELECT version_num FROM alembic_version")) == "0001"
        await connection.execute(text("SELECT body FROM callbacklog"))  # 0001's table as it was

    async with engine.begin() as connection:
        await connection.execute(
            text("UPDATE ticket SET mpesaReceiptNumber = NULL WHERE ticketId = 2")
        )
    await asyncio.to_thread(migrations.upgrade, settings, "head")
    async with engine.connect() as connection:
        receipts = (
            await connection.scalars(text("SELECT mpesaReceiptNumber FROM ticket ORDER BY 1"))
        ).all()
    assert sorted(receipts, key=str) == sorted(["RCPT1", "rcpt1", None, None, None], key=str)


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


async def test_0005_admits_unconfirmed_tickets_and_its_downgrade_fails_them(
    settings: Settings, engine: AsyncEngine
) -> None:
    """The status CHECK admits `Unconfirmed` (and still nothing else, nor an empty order);
    downgrading turns such tickets into Failed and drops the columns 0005 added."""

    def columns(connection: Connection) -> dict[str, set[str]]:
        inspector = inspect(connection)
        return {
            table: {column["name"] for column in inspector.get_columns(table)}
            for table in ("ticket", "idempotencykey", "callbacklog")
        }

    now = datetime.now(UTC).replace(tzinfo=None)
    add_ticket = text(
        "INSERT INTO ticket (movieId, customerName, phoneNumber, quantity, totalAmount, "
        "paymentStatus, holdExpiresAt, needsRefund, dateCreated, lastUpdated) VALUES "
        "(1, 'Jane', '254712345678', :quantity, 100, :status, :now, 0, :now, :now)"
    )
    async with engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO movie (movieId, title, showTime, price, max_tickets, seatsPaid, "
                "dateCreated, lastUpdated) VALUES (1, 'Kept', :now, 100, 10, 0, :now, :now)"
            ),
            {"now": now},
        )
        await connection.execute(add_ticket, {"status": "Unconfirmed", "quantity": 1, "now": now})
    # SQLite: "CHECK constraint failed: ck_...", MariaDB: "CONSTRAINT `ck_...` failed".
    for status, quantity, check in (
        ("Lost", 1, "payment_status_valid"),
        ("Unconfirmed", 0, "quantity_positive"),
    ):
        with pytest.raises(DBAPIError, match=f"ck_ticket_{check}"):
            async with engine.begin() as connection:
                await connection.execute(
                    add_ticket, {"status": status, "quantity": quantity, "now": now}
                )

    await asyncio.to_thread(migrations.downgrade, settings, "0004")
    try:
        async with engine.connect() as connection:
            found = await connection.run_sync(columns)
            statuses = (await connection.scalars(text("SELECT paymentStatus FROM ticket"))).all()
        assert "idempotencyKey" not in found["ticket"]
        assert "accessToken" not in found["idempotencykey"]
        assert "deliveryId" not in found["callbacklog"]
        assert statuses == ["Failed"]
        with pytest.raises(DBAPIError, match="ck_ticket_payment_status_valid"):
            async with engine.begin() as connection:
                await connection.execute(
                    add_ticket, {"status": "Unconfirmed", "quantity": 1, "now": now}
                )
    finally:
        await asyncio.to_thread(migrations.upgrade, settings, "head")
    async with engine.connect() as connection:
        found = await connection.run_sync(columns)
    assert "idempotencyKey" in found["ticket"]
    assert "accessToken" in found["idempotencykey"]
    assert "deliveryId" in found["callbacklog"]
