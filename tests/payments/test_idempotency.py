"""Idempotency-Key on make-payment: replay, mismatch, concurrent duplicate, expiry."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
import respx
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets.db.models import IdempotencyKey, Ticket
from movietickets.kit.clock import utcnow
from tests.helpers import create_movie
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
