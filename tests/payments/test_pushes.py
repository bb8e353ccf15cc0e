"""Pushes recorded in batches: early callbacks applied, matched tickets left alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from movietickets.daraja.client import StkPushAccepted
from movietickets.db.models import (
    CallbackLog,
    CallbackOutcome,
    Movie,
    PaymentStatus,
    PushRequest,
    Ticket,
)
from movietickets.errors import PaymentNotRecorded
from movietickets.payments.pushes import PushRecords
from tests.helpers import callback_body
from tests.sql_hooks import statements_fail, statements_sent

pytestmark = pytest.mark.fake_daraja

PRICE = 200


@pytest.fixture
async def push_records(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[PushRecords]:
    records = PushRecords(sessionmaker, first_query_seconds=75)
    yield records
    await records.aclose()


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
                body=json.dumps(callback_body(checkout_request_id, **body)),
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
    sessionmaker: async_sessionmaker[AsyncSession],
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
    # Without a journal to keep it, the failure names the ticket and the push that went out.
    assert isinstance(outcomes[3], PaymentNotRecorded)
    assert outcomes[3].extra == {
        "ticketId": tickets[3],
        "checkoutRequestId": poisoned,
    }
    assert [outcome for n, outcome in enumerate(outcomes) if n != 3] == [PaymentStatus.PENDING] * 5
    async with sessionmaker() as session:
        stored = set((await session.scalars(select(PushRequest.ticket_id))).all())
    assert stored == set(tickets) - {tickets[3]}
