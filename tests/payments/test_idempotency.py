"""Idempotency-Key on make-payment: replay, mismatch, concurrent duplicate, expiry, and a
first attempt that never answered (a crash): resolved, never run twice."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets.db.models import IdempotencyKey, PushRequest, Ticket
from movietickets.kit.clock import utcnow
from movietickets.payments.idempotency import fingerprint
from movietickets.payments.schemas import PaymentRequest
from tests.helpers import callback_body, create_movie
from tests.payments.conftest import accepted

pytestmark = pytest.mark.fake_daraja


def order(movie_id: int, **changes: Any) -> dict[str, Any]:
    return {
        "movieId": movie_id,
        "customerName": "Jane",
        "phoneNumber": "0712345678",
        "quantity": 1,
        **changes,
    }


async def count(sessionmaker: async_sessionmaker[AsyncSession], model: type[Any]) -> int:
    async with sessionmaker() as session:
        return (await session.scalar(select(func.count()).select_from(model))) or 0


async def pay(client: httpx.AsyncClient, body: dict[str, Any], key: str) -> httpx.Response:
    return await client.post("/api/make-payment", json=body, headers={"Idempotency-Key": key})


async def test_same_key_same_body_replays_without_a_second_prompt(
    client: httpx.AsyncClient,
    daraja: respx.MockRouter,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    daraja["push"].side_effect = [accepted("ws_CO_once")]
    movie = await create_movie(client)
    first = await pay(client, order(movie["movieId"]), "key-1")
    # The same body, written differently (key order, phone format), is the same request.
    again = order(movie["movieId"], phoneNumber="+254 712 345 678")
    second = await pay(client, dict(reversed(list(again.items()))), "key-1")
    assert first.status_code == second.status_code == 200
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert daraja["push"].call_count == 1
    assert await count(sessionmaker, Ticket) == 1


async def test_same_key_other_body_is_422(
    client: httpx.AsyncClient, daraja: respx.MockRouter
) -> None:
    daraja["push"].side_effect = [accepted("ws_CO_a")]
    movie = await create_movie(client)
    assert (await pay(client, order(movie["movieId"]), "key-2")).status_code == 200
    response = await pay(client, order(movie["movieId"], quantity=2), "key-2")
    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"
    assert daraja["push"].call_count == 1


async def test_concurrent_duplicate_is_409_with_retry_after(
    client: httpx.AsyncClient,
    daraja: respx.MockRouter,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow_push(_request: httpx.Request) -> httpx.Response:
        started.set()
        await release.wait()
        return accepted("ws_CO_slow")

    daraja["push"].side_effect = slow_push
    movie = await create_movie(client)
    first = asyncio.create_task(pay(client, order(movie["movieId"]), "key-3"))
    await asyncio.wait_for(started.wait(), 5)
    duplicate = await pay(client, order(movie["movieId"]), "key-3")
    release.set()
    assert (await first).status_code == 200
    assert duplicate.status_code == 409
    assert duplicate.json()["code"] == "idempotency_key_in_use"
    assert duplicate.headers["retry-after"] == "1"
    assert daraja["push"].call_count == 1
    assert await count(sessionmaker, Ticket) == 1


async def test_failures_naming_a_ticket_are_replayed(
    client: httpx.AsyncClient, daraja: respx.MockRouter
) -> None:
    daraja["push"].side_effect = [httpx.Response(400, json={"errorCode": "400.002.02"})]
    movie = await create_movie(client)
    first = await pay(client, order(movie["movieId"]), "key-4")
    second = await pay(client, order(movie["movieId"]), "key-4")
    assert first.status_code == second.status_code == 502
    assert second.json() == first.json()
    assert daraja["push"].call_count == 1


async def test_refusals_before_a_ticket_exists_are_not_stored(
    client: httpx.AsyncClient, daraja: respx.MockRouter
) -> None:
    daraja["push"].side_effect = [accepted("ws_CO_later")]
    movie = await create_movie(client, max_tickets=1)
    refused = await pay(client, order(movie["movieId"], quantity=2), "key-5")
    assert refused.status_code == 409
    # The client may fix the request and retry with the same key.
    assert (await pay(client, order(movie["movieId"], quantity=1), "key-5")).status_code == 200


async def test_keys_expire_after_24_hours(
    client: httpx.AsyncClient,
    daraja: respx.MockRouter,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    daraja["push"].side_effect = [accepted("ws_CO_day1"), accepted("ws_CO_day2")]
    movie = await create_movie(client)
    assert (await pay(client, order(movie["movieId"]), "key-6")).status_code == 200
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(IdempotencyKey).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    second = await pay(client, order(movie["movieId"]), "key-6")
    assert second.status_code == 200
    assert "idempotent-replayed" not in second.headers
    assert daraja["push"].call_count == 2


async def test_bad_keys_are_422(client: httpx.AsyncClient) -> None:
    movie = await create_movie(client)
    for key in ("", "x" * 256, "has space"):
        response = await pay(client, order(movie["movieId"]), key)
        assert response.status_code == 422, key


# --- A first attempt that never answered (its process died, or lost its database) ---------


async def lose_the_answer(
    sessionmaker: async_sessionmaker[AsyncSession], *, push_recorded: bool, age: timedelta
) -> None:
    """Leaves the database as a crash leaves it: the key's answer never stored (and the
    push's answer lost too, unless `push_recorded`), everything `age` old."""
    then = utcnow() - age
    async with sessionmaker() as session, session.begin():
        await session.execute(
            update(IdempotencyKey).values(response_status=None, response_body=None, created_at=then)
        )
        await session.execute(update(Ticket).values(date_created=then))
        if not push_recorded:
            await session.execute(delete(PushRequest))


async def test_a_retry_after_a_lost_answer_answers_from_the_first_ticket(
    client: httpx.AsyncClient,
    daraja: respx.MockRouter,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    daraja["push"].side_effect = [accepted("ws_CO_first")]
    movie = await create_movie(client)
    first = (await pay(client, order(movie["movieId"]), "crash-1")).json()
    await lose_the_answer(sessionmaker, push_recorded=True, age=timedelta(seconds=1))
    retry = await pay(client, order(movie["movieId"]), "crash-1")
    assert retry.status_code == 200, retry.text
    assert retry.headers["idempotent-replayed"] == "true"
    body = retry.json()
    assert body["ticketId"] == first["ticketId"]
    assert body["checkoutRequestId"] == "ws_CO_first"
    # The same secret as the lost answer's: it opens the buyer's details.
    assert body["ticketAccessToken"] == first["ticketAccessToken"]
    opened = await client.get(
        f"/api/tickets/{body['ticketId']}",
        headers={"X-Ticket-Token": body["ticketAccessToken"], "Authorization": ""},
    )
    assert opened.json()["ticket"]["piiMasked"] is False
    assert daraja["push"].call_count == 1
    assert await count(sessionmaker, Ticket) == 1
    # Now stored: the next retry replays the same answer.
    assert (await pay(client, order(movie["movieId"]), "crash-1")).json() == body


async def test_a_retry_never_sends_a_second_push_whatever_the_wait(
    client: httpx.AsyncClient,
    daraja: respx.MockRouter,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    daraja["push"].side_effect = [accepted("ws_CO_lost"), accepted("ws_CO_second")]
    movie = await create_movie(client, price=500)
    ticket_id = (await pay(client, order(movie["movieId"]), "crash-2")).json()["ticketId"]
    # Daraja accepted the push; the process died before storing its answer.
    await lose_the_answer(sessionmaker, push_recorded=False, age=timedelta(seconds=0))
    in_use = await pay(client, order(movie["movieId"]), "crash-2")
    assert in_use.status_code == 409  # the first attempt may still be waiting for Daraja
    assert in_use.json()["code"] == "idempotency_key_in_use"
    assert in_use.headers["retry-after"] == "1"
    # Long past any request's lifetime (and the old 2-minute "abandoned" rule).
    await lose_the_answer(sessionmaker, push_recorded=False, age=timedelta(minutes=10))
    for _ in range(2):
        unknown = await pay(client, order(movie["movieId"]), "crash-2")
        assert unknown.status_code == 504, unknown.text
        assert unknown.json()["code"] == "payment_outcome_unknown"
        assert unknown.json()["ticketId"] == ticket_id
        assert unknown.headers["idempotent-replayed"] == "true"
    # The customer paid: the callback finds the ticket by phone and amount, and the retry
    # then answers with its CheckoutRequestID.
    callback = callback_body("ws_CO_lost", amount=500, phone=254712345678)
    assert (await client.post("/api/payment-callback", json=callback)).status_code == 200
    paid = await pay(client, order(movie["movieId"]), "crash-2")
    assert paid.status_code == 200
    assert paid.json()["ticketId"] == ticket_id
    assert paid.json()["checkoutRequestId"] == "ws_CO_lost"
    assert paid.json()["paymentStatus"] == "Paid"
    assert daraja["push"].call_count == 1
    assert await count(sessionmaker, Ticket) == 1


async def test_a_refused_first_attempt_is_answered_as_refused(
    client: httpx.AsyncClient,
    daraja: respx.MockRouter,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    daraja["push"].side_effect = [httpx.Response(400, json={"errorCode": "400.002.02"})]
    movie = await create_movie(client)
    first = await pay(client, order(movie["movieId"]), "crash-3")
    assert first.status_code == 502
    await lose_the_answer(sessionmaker, push_recorded=False, age=timedelta(minutes=10))
    retry = await pay(client, order(movie["movieId"]), "crash-3")
    assert retry.status_code == 502
    assert retry.json()["ticketId"] == first.json()["ticketId"]
    assert daraja["push"].call_count == 1


async def test_a_key_whose_first_attempt_died_before_a_ticket_runs_again(
    client: httpx.AsyncClient,
    daraja: respx.MockRouter,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    daraja["push"].side_effect = [accepted("ws_CO_rerun")]
    movie = await create_movie(client)
    body = order(movie["movieId"])
    now = utcnow()
    async with sessionmaker() as session, session.begin():
        session.add(
            IdempotencyKey(
                key="crash-4",
                request_hash=fingerprint(PaymentRequest.model_validate(body)),
                access_token="token-of-the-dead-attempt",
                created_at=now,
                expires_at=now + timedelta(hours=24),
            )
        )
    assert (await pay(client, body, "crash-4")).status_code == 409
    # Past the longest a request may run (pool timeout, then OAuth and push: 23 s here).
    async with sessionmaker() as session, session.begin():
        await session.execute(update(IdempotencyKey).values(created_at=now - timedelta(seconds=30)))
    rerun = await pay(client, body, "crash-4")
    assert rerun.status_code == 200, rerun.text
    assert "idempotent-replayed" not in rerun.headers
    assert rerun.json()["ticketAccessToken"] != "token-of-the-dead-attempt"
    assert daraja["push"].call_count == 1
    assert await count(sessionmaker, Ticket) == 1


async def test_a_timed_out_first_attempt_is_answered_once_its_payment_is_known(
    client: httpx.AsyncClient,
    daraja: respx.MockRouter,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Its 504 is stored, and replayed while the outcome is unknown; a callback matched to
    the ticket makes the outcome known, and the retry is told the ticket's push and status."""
    daraja["push"].side_effect = [httpx.ReadTimeout("no answer"), accepted("ws_CO_second")]
    movie = await create_movie(client, price=500)
    first = await pay(client, order(movie["movieId"]), "timeout-1")
    assert first.status_code == 504
    again = await pay(client, order(movie["movieId"]), "timeout-1")
    assert (again.status_code, again.json()) == (504, first.json())
    assert again.headers["idempotent-replayed"] == "true"
    callback = callback_body("ws_CO_answered", amount=500, phone=254712345678)
    assert (await client.post("/api/payment-callback", json=callback)).status_code == 200
    known = await pay(client, order(movie["movieId"]), "timeout-1")
    assert known.status_code == 200, known.text
    assert known.headers["idempotent-replayed"] == "true"
    assert known.json()["ticketId"] == first.json()["ticketId"]
    assert known.json()["checkoutRequestId"] == "ws_CO_answered"
    assert known.json()["paymentStatus"] == "Paid"
    assert daraja["push"].call_count == 1
    assert await count(sessionmaker, Ticket) == 1
