"""Rate limits: writes per client address, make-payment per phone and amount, on both stores.

Every test runs with the counts in memory and in Redis (see tests/redis_store.py: without
Redis the Redis half is skipped, except under CI=true, where that fails the run).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets.db.models import CallbackLog, PaymentStatus, Ticket
from movietickets.payments.callbacks import REFUSED_BODY_BYTES
from movietickets.settings import Settings
from tests.helpers import buy, callback_body, create_movie, wait_for_status
from tests.payments.test_callbacks import post_callback
from tests.redis_store import REDIS_TEST_URL, redis_key_prefix

UNKNOWN_PAYMENT = {"checkoutRequestId": "ws_CO_unknown"}


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[dict[str, Any]]:
    """Settings that put the counts in memory, or in Redis under a prefix of this test's own."""
    if request.param == "memory":
        yield {"redis_url": None}
        return
    async with redis_key_prefix() as prefix:
        yield {"redis_url": SecretStr(REDIS_TEST_URL), "rate_limit_key_prefix": prefix}


@pytest.fixture
def limits() -> dict[str, Any]:
    """The limits a test wants; overridden per class."""
    return {"rate_limit_writes": "3/minute", "rate_limit_phone": "1/2 minutes"}


@pytest.fixture
def settings(settings: Settings, store: dict[str, Any], limits: dict[str, Any]) -> Settings:
    return settings.model_copy(update={"rate_limit_enabled": True, **store, **limits})


def client_at(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40123))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def assert_rate_limited(response: httpx.Response, longest: int) -> int:
    assert response.status_code == 429, response.text
    body = response.json()
    assert body["code"] == "rate_limited"
    assert set(body) == {"error", "code"}
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= longest
    return retry_after


async def count_tickets(sessionmaker: async_sessionmaker[AsyncSession]) -> int:
    async with sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(Ticket)) or 0)


class TestWritesPerAddress:
    async def test_over_the_limit_is_refused_with_retry_after(self, app: FastAPI) -> None:
        async with client_at(app, "203.0.113.9") as client:
            for _ in range(3):
                response = await client.post("/api/query-payment-status", json=UNKNOWN_PAYMENT)
                assert response.status_code == 404
            refused = await client.post("/api/query-payment-status", json=UNKNOWN_PAYMENT)
        assert_rate_limited(refused, 60)
        assert "X-Request-ID" in refused.headers
        assert "3 per 1 minute" in refused.json()["error"]

    async def test_every_write_route_counts_against_one_address(self, app: FastAPI) -> None:
        async with client_at(app, "203.0.113.9") as client:
            await client.post("/api/query-payment-status", json=UNKNOWN_PAYMENT)
            await client.post("/api/make-payment", json={})
            await client.delete("/api/movies/1")
            refused = await client.post("/api/movies", json={})
        assert_rate_limited(refused, 60)

    async def test_each_address_has_its_own_count(self, app: FastAPI) -> None:
        async with client_at(app, "203.0.113.9") as first, client_at(app, "2001:db8::9") as other:
            for _ in range(3):
                await first.post("/api/query-payment-status", json=UNKNOWN_PAYMENT)
            assert (await first.post("/api/query-payment-status", json={})).status_code == 429
            response = await other.post("/api/query-payment-status", json=UNKNOWN_PAYMENT)
        assert response.status_code == 404

    async def test_reads_are_not_limited(self, app: FastAPI) -> None:
        async with client_at(app, "203.0.113.9") as client:
            responses = [await client.get("/api/movies") for _ in range(10)]
        assert {response.status_code for response in responses} == {200}

    @pytest.mark.parametrize("path", ["/api/mpesa-callback", "/api/payment-callback"])
    async def test_callbacks_are_never_limited(self, app: FastAPI, path: str) -> None:
        async with client_at(app, "196.201.214.200") as client:
            statuses = [
                (await post_callback(client, body, path)).status_code
                for body in [callback_body(f"ws_CO_{n}", 1032, metadata=False) for n in range(10)]
                + [b"{nope"] * 5
            ]
            assert statuses == [200] * 10 + [400] * 5
            # Nor do they count against the address's writes.
            for _ in range(3):
                response = await client.post("/api/query-payment-status", json=UNKNOWN_PAYMENT)
                assert response.status_code == 404


class TestRefusedCallbacks:
    """Refused callbacks count per address and keep only their first bytes; Daraja's own, with
    the right secret, never count and are never limited."""

    @pytest.fixture
    def limits(self) -> dict[str, Any]:
        return {
            "rate_limit_writes": "3/minute",
            "rate_limit_phone": "1/2 minutes",
            "rate_limit_refused_callbacks": "3/minute",
            "mpesa_callback_token": SecretStr("s3cret-token"),
        }

    @staticmethod
    def forgery(n: int) -> bytes:
        body = callback_body(f"ws_CO_forged{n}")
        body["padding"] = "x" * 60_000
        return json.dumps(body).encode()

    @staticmethod
    async def stored(sessionmaker: async_sessionmaker[AsyncSession]) -> list[CallbackLog]:
        async with sessionmaker() as session:
            rows = await session.scalars(select(CallbackLog).order_by(CallbackLog.callback_id))
            return list(rows.all())

    async def test_over_the_limit_they_get_429_and_are_not_stored(
        self, app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        forgeries = [self.forgery(n) for n in range(6)]
        async with client_at(app, "203.0.113.9") as forger, client_at(app, "2001:db8::9") as other:
            responses = [
                await post_callback(forger, raw, f"/api/payment-callback{query}")
                for raw, query in zip(forgeries, ["", "?token=wrong"] * 3, strict=True)
            ]
            assert [response.status_code for response in responses[:3]] == [403] * 3
            for response in responses[3:]:
                assert_rate_limited(response, 60)
            assert "refused callbacks" in responses[3].json()["error"]
            # Another address has its own count.
            elsewhere = await post_callback(other, forgeries[0], "/api/payment-callback")
            assert elsewhere.status_code == 403
        entries = await self.stored(sessionmaker)
        assert [entry.source_ip for entry in entries] == ["203.0.113.9"] * 3 + ["2001:db8::9"]
        for entry, raw in zip(entries, forgeries[:3] + forgeries[:1], strict=True):
            assert entry.outcome == "refused"
            assert entry.body == raw[:REFUSED_BODY_BYTES]
            assert (entry.body_size, entry.body_sha256) == (
                len(raw),
                hashlib.sha256(raw).hexdigest(),
            )

    async def test_callbacks_with_the_secret_are_never_limited(
        self, app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with client_at(app, "196.201.214.200") as daraja:
            good = "/api/payment-callback?token=s3cret-token"
            bodies = [callback_body(f"ws_CO_{n}", 1032, metadata=False) for n in range(8)]
            before = [(await post_callback(daraja, body, good)).status_code for body in bodies]
            refused = [
                (await post_callback(daraja, body, "/api/payment-callback")).status_code
                for body in bodies[:4]
            ]
            after = [(await post_callback(daraja, body, good)).status_code for body in bodies]
            malformed = (await post_callback(daraja, b"{nope", good)).status_code
        # The good ones did not use up the refused ones' count, nor the other way round.
        assert (before, refused, after, malformed) == ([200] * 8, [403] * 3 + [429], [200] * 8, 400)
        stored = [entry.outcome.value for entry in await self.stored(sessionmaker)]
        assert stored.count("refused") == 3
        assert len(stored) == 8 + 3 + 8 + 1


class TestWritesAndTheSimulator:
    @pytest.fixture
    def limits(self) -> dict[str, Any]:
        return {"rate_limit_writes": "2/minute", "rate_limit_phone": "1/2 minutes"}

    async def test_a_payment_is_one_write_whatever_it_calls(
        self, client: httpx.AsyncClient
    ) -> None:
        """The push to the simulator and its callback come from 127.0.0.1 too, unlimited."""
        movie = await create_movie(client)
        response = await buy(client, movie["movieId"])
        assert response.status_code == 200, response.text
        await wait_for_status(client, response.json()["ticketId"], "Paid")
        assert (await buy(client, movie["movieId"], phone="0712340000")).status_code == 429


class TestPaymentsPerPhone:
    @pytest.fixture
    def limits(self) -> dict[str, Any]:
        return {"rate_limit_writes": "100/minute", "rate_limit_phone": "1/2 minutes"}

    async def test_the_same_payment_twice_is_refused_before_daraja(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        movie = await create_movie(client)
        assert (await buy(client, movie["movieId"], phone="0712349003")).status_code == 200
        # The same phone in another form is the same phone.
        refused = await buy(client, movie["movieId"], phone="+254 712 349 003")
        retry_after = assert_rate_limited(refused, 120)
        assert retry_after > 60
        assert "2 minutes" in refused.json()["error"]
        assert await count_tickets(sessionmaker) == 1

    async def test_another_phone_amount_or_movie_goes_through(
        self, client: httpx.AsyncClient
    ) -> None:
        movie = await create_movie(client)
        other_movie = await create_movie(client)
        orders = [
            (movie["movieId"], "0712349003", 1),
            (movie["movieId"], "0712349103", 1),
            (movie["movieId"], "0712349003", 2),
            (other_movie["movieId"], "0712349003", 1),
        ]
        for movie_id, phone, quantity in orders:
            response = await buy(client, movie_id, phone=phone, quantity=quantity)
            assert response.status_code == 200, response.text

    async def test_refusals_before_the_push_are_not_counted(
        self, client: httpx.AsyncClient
    ) -> None:
        movie = await create_movie(client, max_tickets=1)
        for _ in range(2):
            assert (await buy(client, movie["movieId"], quantity=2)).status_code == 409
        assert (await buy(client, 999_999)).status_code == 404
        assert (await buy(client, 999_999)).status_code == 404

    async def test_a_push_daraja_refused_is_not_counted(self, client: httpx.AsyncClient) -> None:
        movie = await create_movie(client)
        for _ in range(2):
            response = await buy(client, movie["movieId"], phone="0712349500")
            assert response.status_code == 502, response.text

    async def test_concurrent_repeats_send_one_push(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        movie = await create_movie(client)
        responses = await asyncio.gather(
            *(buy(client, movie["movieId"], phone="0712349003") for _ in range(4))
        )
        assert sorted(response.status_code for response in responses) == [200, 429, 429, 429]
        async with sessionmaker() as session:
            statuses = list(await session.scalars(select(Ticket.payment_status)))
        # A request that lost the race after holding seats released them at once.
        assert statuses.count(PaymentStatus.PENDING) == 1

    async def test_an_idempotent_retry_is_a_replay_not_a_repeat(
        self, client: httpx.AsyncClient
    ) -> None:
        movie = await create_movie(client)
        order = {
            "movieId": movie["movieId"],
            "customerName": "Jane Wanjiru",
            "phoneNumber": "0712349003",
            "quantity": 1,
        }
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        first = await client.post("/api/make-payment", json=order, headers=headers)
        again = await client.post("/api/make-payment", json=order, headers=headers)
        assert (first.status_code, again.status_code) == (200, 200)
        assert again.headers["Idempotent-Replayed"] == "true"


class TestStoreDown:
    @pytest.fixture
    def store(self) -> dict[str, Any]:
        # A port nothing listens on: every request must still be served.
        return {"redis_url": SecretStr("redis://127.0.0.1:1/0")}

    @pytest.fixture
    def limits(self) -> dict[str, Any]:
        return {"rate_limit_writes": "1/minute", "rate_limit_phone": "1/2 minutes"}

    async def test_requests_go_through_and_a_warning_is_logged(
        self, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
    ) -> None:
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="movietickets.ratelimit"):
            movie = await create_movie(client)
            for _ in range(2):
                response = await buy(client, movie["movieId"], phone="0712349003")
                assert response.status_code == 200, response.text
        assert time.monotonic() - started < 10
        assert any("unreachable" in record.getMessage() for record in caplog.records)
