"""Pushes recorded in batches: early callbacks applied, matched tickets left alone; and an
accepted push is never dropped: what the database does not take promptly is journaled."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from movietickets.daraja.client import StkPushAccepted
from movietickets.db.engine import read_transaction
from movietickets.db.models import (
    CallbackLog,
    CallbackOutcome,
    Movie,
    PaymentStatus,
    PushRequest,
    Ticket,
)
from movietickets.errors import PaymentOutcomeUnknown
from movietickets.kit.journal import Journal
from movietickets.payments.journal import PaymentJournal
from movietickets.payments.pushes import PushRecords
from movietickets.payments.recovery import JournalReplayer
from movietickets.settings import Settings
from tests.helpers import callback_body
from tests.sql_hooks import statements_fail, statements_sent

pytestmark = pytest.mark.fake_daraja

PRICE = 200


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[PaymentJournal]:
    journal = PaymentJournal(Journal(tmp_path / "journal"))
    yield journal
    journal.close()


@asynccontextmanager
async def recording_pushes(
    sessionmaker: async_sessionmaker[AsyncSession],
    journal: PaymentJournal,
    journal_after_seconds: float = 30,
) -> AsyncIterator[PushRecords]:
    records = PushRecords(
        sessionmaker,
        journal,
        first_query_seconds=75,
        journal_after_seconds=journal_after_seconds,
    )
    try:
        yield records
    finally:
        await records.aclose()


@pytest.fixture
async def push_records(
    sessionmaker: async_sessionmaker[AsyncSession], journal: PaymentJournal
) -> AsyncIterator[PushRecords]:
    async with recording_pushes(sessionmaker, journal) as records:
        yield records


def journaled(journal: PaymentJournal) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(journal.journal.directory.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


async def stored_pushes(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[int, str]:
    async with read_transaction(sessionmaker) as session:  # beside SQLite's writer
        rows = await session.execute(select(PushRequest.ticket_id, PushRequest.checkout_request_id))
        return {ticket_id: checkout_id for ticket_id, checkout_id in rows}


async def eventually(condition: Callable[[], Awaitable[bool]]) -> None:
    """Waits for another task's work, however slowly a loaded machine does it."""
    async with asyncio.timeout(30):
        while not await condition():  # noqa: ASYNC110 (polling the database)
            await asyncio.sleep(0.02)


@asynccontextmanager
async def database_held(engine: AsyncEngine, backend: str, checkout_id: str) -> AsyncIterator[None]:
    """Another transaction holds what recording this push must lock first, until the block
    ends: a database that takes its time (SQLite: its write lock; MariaDB: a callback row
    for the push, which the recording locks)."""
    if backend == "mariadb":
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "INSERT INTO callbacklog (checkoutRequestId, body, outcome, receivedAt) "
                    "VALUES (:id, '', 'ignored', :now)"
                ),
                {"id": checkout_id, "now": datetime.now(UTC).replace(tzinfo=None)},
            )
    async with engine.connect() as connection:
        transaction = await connection.begin()  # SQLite: BEGIN IMMEDIATE, the write lock
        if backend == "mariadb":
            await connection.execute(
                text("SELECT callbackId FROM callbacklog WHERE checkoutRequestId = :id FOR UPDATE"),
                {"id": checkout_id},
            )
        try:
            yield
        finally:
            await transaction.rollback()


@pytest.fixture
def transactions(engine: AsyncEngine) -> Iterator[list[str]]:
    """The pushes' INSERT statements, one per recording transaction."""
    with statements_sent(
        engine, lambda statement: statement.startswith("INSERT INTO pushrequest")
    ) as sent:
        yield sent


async def pending_tickets(sessionmaker: async_sessionmaker[AsyncSession], count: int) -> list[int]:
    now = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        movie = Movie(
            title="Showing",
            show_time=now + timedelta(days=1),
            price=PRICE,
            max_tickets=1000,
            seats_paid=0,
        )
        session.add(movie)
        await session.flush()
        tickets = [
            Ticket(
                movie_id=movie.movie_id,
                customer_name=f"Buyer {n}",
                phone_number=f"2547{n:08d}",
                quantity=1,
                total_amount=PRICE,
                payment_status=PaymentStatus.PENDING,
                hold_expires_at=now + timedelta(minutes=10),
                needs_refund=False,
            )
            for n in range(count)
        ]
        session.add_all(tickets)
    return [ticket.ticket_id for ticket in tickets]


def accepted(n: int) -> StkPushAccepted:
    return StkPushAccepted(
        merchant_request_id=f"m-{n}",
        checkout_request_id=f"ws_CO_test{n:06d}",
        response_code="0",
        response_description="Success. Request accepted for processing",
        customer_message="Success. Request accepted for processing",
    )


async def add_callback(
    sessionmaker: async_sessionmaker[AsyncSession], checkout_request_id: str, **body: Any
) -> None:
    async with sessionmaker() as session, session.begin():
        session.add(
            CallbackLog(
                body=json.dumps(callback_body(checkout_request_id, **body)).encode(),
                checkout_request_id=checkout_request_id,
                outcome=CallbackOutcome.UNMATCHED,
            )
        )


async def test_a_rush_of_pushes_is_stored_in_few_transactions(
    push_records: PushRecords,
    sessionmaker: async_sessionmaker[AsyncSession],
    transactions: list[str],
) -> None:
    tickets = await pending_tickets(sessionmaker, 120)
    statuses = await asyncio.gather(
        *(push_records.record(ticket, accepted(n)) for n, ticket in enumerate(tickets))
    )
    assert set(statuses) == {PaymentStatus.PENDING}
    async with sessionmaker() as session:
        stored = {
            push.ticket_id: push for push in (await session.scalars(select(PushRequest))).all()
        }
    assert set(stored) == set(tickets)
    for n, ticket in enumerate(tickets):
        assert stored[ticket].checkout_request_id == f"ws_CO_test{n:06d}"
        assert stored[ticket].merchant_request_id == f"m-{n}"
        assert stored[ticket].query_attempts == 0
        assert stored[ticket].next_query_at is not None
    assert 1 <= len(transactions) <= 120 / 4


async def test_early_callbacks_are_applied_and_adopted_tickets_left_alone(
    push_records: PushRecords, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    paid, failed, adopted, plain = await pending_tickets(sessionmaker, 4)
    await add_callback(sessionmaker, accepted(0).checkout_request_id, amount=PRICE)
    await add_callback(sessionmaker, accepted(1).checkout_request_id, result_code=1032)
    # A success callback already matched this ticket by phone and amount, under its own id.
    async with sessionmaker() as session, session.begin():
        session.add(
            PushRequest(ticket_id=adopted, checkout_request_id="ws_CO_matched", query_attempts=0)
        )
        ticket = await session.get_one(Ticket, adopted)
        ticket.payment_status = PaymentStatus.PAID

    statuses = await asyncio.gather(
        *(push_records.record(t, accepted(n)) for n, t in enumerate((paid, failed, adopted, plain)))
    )
    assert statuses == [
        PaymentStatus.PAID,
        PaymentStatus.FAILED,
        PaymentStatus.PAID,
        PaymentStatus.PENDING,
    ]
    async with sessionmaker() as session:
        pushes = {
            push.ticket_id: push.checkout_request_id
            for push in (await session.scalars(select(PushRequest))).all()
        }
        outcomes = {
            entry.checkout_request_id: (entry.outcome, entry.ticket_id)
            for entry in (await session.scalars(select(CallbackLog))).all()
        }
        movie = await session.get_one(Movie, (await session.get_one(Ticket, paid)).movie_id)
    assert pushes[adopted] == "ws_CO_matched"
    assert pushes[plain] == accepted(3).checkout_request_id
    assert outcomes[accepted(0).checkout_request_id] == (CallbackOutcome.APPLIED, paid)
    assert outcomes[accepted(1).checkout_request_id] == (CallbackOutcome.APPLIED, failed)
    assert movie.seats_paid == 1


async def test_duplicate_early_callbacks_pay_once(
    push_records: PushRecords, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    (ticket_id,) = await pending_tickets(sessionmaker, 1)
    checkout_id = accepted(0).checkout_request_id
    await add_callback(sessionmaker, checkout_id, amount=PRICE, receipt="FIRST00001")
    await add_callback(sessionmaker, checkout_id, amount=PRICE, receipt="SECOND0002")
    assert await push_records.record(ticket_id, accepted(0)) == PaymentStatus.PAID
    async with sessionmaker() as session:
        outcomes = [
            entry.outcome
            for entry in (
                await session.scalars(select(CallbackLog).order_by(CallbackLog.callback_id))
            ).all()
        ]
        ticket = await session.get_one(Ticket, ticket_id)
        movie = await session.get_one(Movie, ticket.movie_id)
    assert outcomes == [CallbackOutcome.APPLIED, CallbackOutcome.IGNORED]
    assert ticket.mpesa_receipt_number == "FIRST00001"
    assert movie.seats_paid == 1


async def test_one_failing_push_does_not_cost_the_others_their_record(
    push_records: PushRecords,
    journal: PaymentJournal,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    engine: AsyncEngine,
) -> None:
    tickets = await pending_tickets(sessionmaker, 6)
    poisoned = accepted(3).checkout_request_id

    def poisoned_insert(statement: str, parameters: Any) -> bool:
        return statement.startswith("INSERT INTO pushrequest") and poisoned in repr(parameters)

    with statements_fail(engine, poisoned_insert, "deadlock"):
        outcomes = await asyncio.gather(
            *(push_records.record(ticket, accepted(n)) for n, ticket in enumerate(tickets)),
            return_exceptions=True,
        )
        assert outcomes == [PaymentStatus.PENDING] * 6
        assert set(await stored_pushes(sessionmaker)) == set(tickets) - {tickets[3]}
        # The failed record is not dropped: it waits in the journal, and is retried.
        (kept,) = journaled(journal)
        assert (kept["kind"], kept["ticketId"], kept["checkoutRequestId"]) == (
            "push",
            tickets[3],
            poisoned,
        )
        replayer = JournalReplayer(journal, sessionmaker, settings)
        assert (await replayer.replay_once()).kept == 1
    assert (await replayer.replay_once()).handled == 1
    assert (await stored_pushes(sessionmaker))[tickets[3]] == poisoned
    assert journaled(journal) == []


async def test_a_push_neither_database_nor_journal_takes_names_its_ticket(
    sessionmaker: async_sessionmaker[AsyncSession], engine: AsyncEngine, tmp_path: Path
) -> None:
    (ticket_id,) = await pending_tickets(sessionmaker, 1)
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    unwritable = PaymentJournal(Journal(blocked))

    def every_insert(statement: str, _parameters: Any) -> bool:
        return statement.startswith("INSERT INTO pushrequest")

    with statements_fail(engine, every_insert, "database gone"):
        async with recording_pushes(sessionmaker, unwritable) as records:
            with pytest.raises(PaymentOutcomeUnknown) as unknown:
                await records.record(ticket_id, accepted(0))
    assert unknown.value.status_code == 504
    assert unknown.value.extra == {"ticketId": ticket_id}
    assert accepted(0).checkout_request_id in unknown.value.message  # do not pay again


async def test_a_push_the_database_is_slow_to_take_is_journaled_promptly(
    sessionmaker: async_sessionmaker[AsyncSession],
    journal: PaymentJournal,
    engine: AsyncEngine,
    backend: str,
    settings: Settings,
) -> None:
    """The buyer is answered and the push is on disk within JOURNAL_PUSH_AFTER_SECONDS,
    whatever the database does; the database records it once it can."""
    (ticket_id,) = await pending_tickets(sessionmaker, 1)
    push = accepted(0)
    async with recording_pushes(sessionmaker, journal, journal_after_seconds=0.2) as records:
        async with database_held(engine, backend, push.checkout_request_id):
            status = await asyncio.wait_for(records.record(ticket_id, push), 20)
            assert status == PaymentStatus.PENDING
            assert [(e["kind"], e["ticketId"]) for e in journaled(journal)] == [("push", ticket_id)]
            assert await stored_pushes(sessionmaker) == {}

        async def recorded() -> bool:
            return bool(await stored_pushes(sessionmaker))

        await eventually(recorded)  # the recording went on once the database let it
    assert (await JournalReplayer(journal, sessionmaker, settings).replay_once()).handled == 1
    assert await stored_pushes(sessionmaker) == {ticket_id: push.checkout_request_id}


async def test_a_push_is_recorded_though_its_request_is_cancelled(
    push_records: PushRecords,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    backend: str,
) -> None:
    """The request that sent the push goes away while its record waits for the batch in
    flight: Daraja will not say again that it accepted the push."""
    first, second = await pending_tickets(sessionmaker, 2)

    def waits_for_the_lock(statement: str) -> bool:  # the first statement of a recording
        return statement.startswith("BEGIN IMMEDIATE") or "FROM callbacklog" in statement

    async with database_held(engine, backend, accepted(0).checkout_request_id):
        with statements_sent(engine, waits_for_the_lock) as sent:
            in_flight = asyncio.create_task(push_records.record(first, accepted(0)))

            async def first_batch_in_the_database() -> bool:
                return bool(sent)

            await eventually(first_batch_in_the_database)
        waiting = asyncio.create_task(push_records.record(second, accepted(1)))
        await asyncio.sleep(0)  # queued behind the batch in flight
        waiting.cancel()
    assert await in_flight == PaymentStatus.PENDING

    async def both_recorded() -> bool:
        return len(await stored_pushes(sessionmaker)) == 2

    await eventually(both_recorded)
