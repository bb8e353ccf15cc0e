"""Callbacks and accepted pushes kept in the journal while the database is away, and replayed
into it when it is back: answered at once, applied once, never lost."""

from __future__ import annotations

import base64
import hashlib
import json
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets.db.models import CallbackLog, CallbackOutcome, Movie, PushRequest, Ticket
from movietickets.payments.recovery import JournalReplayer
from movietickets.settings import Settings
from tests.helpers import buy, callback_body, create_movie, ticket
from tests.sql_hooks import database_unreachable

ACK = {"ResultCode": 0, "ResultDesc": "Accepted"}


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    # A journal of this test's own; the app's background replay only runs when told to.
    return settings.model_copy(
        update={"journal_dir": tmp_path / "journal", "journal_replay_seconds": 3600}
    )


def replayer(app: FastAPI) -> JournalReplayer:
    resources = app.state.resources
    return JournalReplayer(resources.journal, resources.sessionmaker, resources.settings)


def kept(settings: Settings) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(settings.journal_dir.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


async def count(sessionmaker: async_sessionmaker[AsyncSession], model: type[Any]) -> int:
    async with sessionmaker() as session:
        return (await session.scalar(select(func.count()).select_from(model))) or 0


async def test_a_callback_while_the_database_is_away_is_kept_and_applied_once(
    client: httpx.AsyncClient,
    app: FastAPI,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    movie = await create_movie(client, price=500)
    bought = (await buy(client, movie["movieId"], phone="0712349003")).json()
    callback = callback_body(bought["checkoutRequestId"], amount=500)
    with database_unreachable(app.state.resources.engine):
        answer = await client.post("/api/payment-callback", json=callback)
        assert answer.status_code == 200, answer.text
        assert answer.json() == ACK
        report = await replayer(app).replay_once()  # still away: kept, retried later
    assert report.stopped
    (entry,) = kept(settings)
    assert entry["kind"] == "callback"
    assert json.loads(base64.b64decode(entry["body"])) == callback
    assert await count(sessionmaker, CallbackLog) == 0

    assert (await replayer(app).replay_once()).handled == 1
    assert (await ticket(client, bought["ticketId"]))["paymentStatus"] == "Paid"
    assert kept(settings) == []
    # A second replay of the same delivery (a replayer that died before deleting it, or a
    # lost race) stores and applies nothing more.
    await app.state.resources.journal.journal.append(entry)
    assert (await replayer(app).replay_once()).handled == 1
    async with sessionmaker() as session:
        logged = (await session.scalars(select(CallbackLog))).all()
        movie_row = await session.get_one(Movie, movie["movieId"])
    assert [(row.outcome, row.delivery_id) for row in logged] == [
        (CallbackOutcome.APPLIED, entry["deliveryId"])
    ]
    assert movie_row.seats_paid == 1


async def test_a_callback_stored_but_not_applied_is_applied_from_the_journal(
    client: httpx.AsyncClient,
    app: FastAPI,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The database went away between storing the body and applying it."""
    movie = await create_movie(client, price=500)
    bought = (await buy(client, movie["movieId"], phone="0712349003")).json()
    with database_unreachable_for(app, "FROM pushrequest"):
        answer = await client.post(
            "/api/payment-callback", json=callback_body(bought["checkoutRequestId"], amount=500)
        )
    assert answer.status_code == 200
    assert await count(sessionmaker, CallbackLog) == 1  # stored, still `received`
    await replayer(app).replay_once()
    assert (await ticket(client, bought["ticketId"]))["paymentStatus"] == "Paid"
    async with sessionmaker() as session:
        (row,) = (await session.scalars(select(CallbackLog))).all()
    assert row.outcome == CallbackOutcome.APPLIED


async def test_refused_and_malformed_callbacks_are_kept_for_the_log_too(
    client: httpx.AsyncClient,
    app: FastAPI,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Kept as the callback log keeps them: a refused one only its first bytes, with the
    size and hash of the whole."""
    resources = app.state.resources
    resources.settings = resources.settings.model_copy(
        update={"mpesa_callback_token": SecretStr("the-callback-secret")}
    )
    forged = b'{"forged": "' + b"x" * 10_000 + b'"}'
    with database_unreachable(resources.engine):
        malformed = await client.post(
            "/api/payment-callback", params={"token": "the-callback-secret"}, content=b"{}"
        )
        assert malformed.status_code == 400
        refused = await client.post("/api/payment-callback", content=forged)
        assert refused.status_code == 403
    await replayer(app).replay_once()
    async with sessionmaker() as session:
        rows = (await session.scalars(select(CallbackLog).order_by(CallbackLog.callback_id))).all()
    assert [(row.outcome, row.body, row.body_size) for row in rows] == [
        (CallbackOutcome.MALFORMED, b"{}", 2),
        (CallbackOutcome.REFUSED, forged[:2048], len(forged)),
    ]
    assert rows[1].body_sha256 == hashlib.sha256(forged).hexdigest()
    assert rows[1].detail == "bad token"


async def test_without_database_or_journal_the_callback_is_refused_and_logged(
    client: httpx.AsyncClient,
    app: FastAPI,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.journal_dir.parent.mkdir(parents=True, exist_ok=True)
    settings.journal_dir.write_text("a file where the journal's directory should be")
    callback = callback_body("ws_CO_nowhere", amount=500)
    with database_unreachable(app.state.resources.engine):
        answer = await client.post("/api/payment-callback", json=callback)
    assert answer.status_code == 503
    assert answer.json()["code"] == "database_down"
    assert "NOT STORED" in caplog.text
    assert "ws_CO_nowhere" in caplog.text  # the body is in the log, for the operator


async def test_a_push_accepted_while_the_database_is_away_is_recorded_when_it_is_back(
    client: httpx.AsyncClient,
    app: FastAPI,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    movie = await create_movie(client, price=500)
    # The seats are held, then the database goes away while Daraja answers the push (and
    # while its callback comes: the simulator's is lost with phone 9003, so we send it).
    with database_unreachable_for(app, "pushrequest", "callbacklog"):
        bought = await buy(client, movie["movieId"], phone="0712349003")
        assert bought.status_code == 200, bought.text
        body = bought.json()
        assert body["paymentStatus"] == "Pending"
        callback = callback_body(body["checkoutRequestId"], amount=500)
        assert (await client.post("/api/payment-callback", json=callback)).status_code == 200
    assert [entry["kind"] for entry in kept(settings)] == ["push", "callback"]
    assert await count(sessionmaker, PushRequest) == 0

    await replayer(app).replay_once()
    async with sessionmaker() as session:
        (push,) = (await session.scalars(select(PushRequest))).all()
        stored = await session.get_one(Ticket, body["ticketId"])
    assert (push.ticket_id, push.checkout_request_id) == (
        body["ticketId"],
        body["checkoutRequestId"],
    )
    assert stored.payment_status == "Paid"
    assert kept(settings) == []


async def test_a_push_that_neither_database_nor_journal_takes_still_names_its_ticket(
    client: httpx.AsyncClient, app: FastAPI, settings: Settings
) -> None:
    settings.journal_dir.parent.mkdir(parents=True, exist_ok=True)
    settings.journal_dir.write_text("not a directory")
    movie = await create_movie(client)
    with database_unreachable_for(app, "pushrequest"):
        response = await buy(client, movie["movieId"], phone="0712349003")
    # As when Daraja does not answer: the ticket named, its outcome unknown, no invitation to
    # retry (a retry would prompt the customer again).
    assert response.status_code == 504
    body = response.json()
    assert body["code"] == "payment_outcome_unknown"
    assert body["ticketId"] >= 1
    assert "ws_CO_" in body["error"]  # the CheckoutRequestID, for the operator
    assert "retry-after" not in response.headers


def database_unreachable_for(app: FastAPI, *tables: str) -> AbstractContextManager[None]:
    """Statements naming one of `tables` fail as if the database were away (the others go
    through: the seats can still be held)."""
    return database_unreachable(
        app.state.resources.engine, only=lambda sql: any(table in sql for table in tables)
    )
