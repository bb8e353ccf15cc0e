"""Sign-in attempts: failures limited per username and per client address, counted in the
database (exact across instances without Redis), refused before the password is checked."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets.auth import service
from movietickets.db.models import SignInCount
from movietickets.kit.clock import utcnow
from movietickets.settings import Settings
from tests.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, admin_headers, loopback_app

PER_USERNAME = 3
PER_ADDRESS = 5
TOO_MANY = {"error": "Too many sign-in attempts; try again in {} s", "code": "rate_limited"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "rate_limit_enabled": True,
            "rate_limit_writes": "1000/minute",  # not what these tests are about
            "rate_limit_sign_in_username": f"{PER_USERNAME}/15 minutes",
            "rate_limit_sign_in_address": f"{PER_ADDRESS}/15 minutes",
        }
    )


@pytest.fixture
async def admin(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    await admin_headers(sessionmaker, settings)  # adds the test admin


@pytest.fixture
def verified() -> Iterator[list[str]]:
    """The passwords argon2 was asked to check."""
    checked: list[str] = []
    original = service.password_hasher.verify

    def verify(password: str | bytes, hash: str | bytes) -> bool:
        checked.append(str(password))
        return original(password, hash)

    service.password_hasher.verify = verify  # type: ignore[method-assign]
    yield checked
    service.password_hasher.verify = original  # type: ignore[method-assign]


def client_at(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40123))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def sign_in(app: FastAPI, address: str, username: str, password: str) -> httpx.Response:
    async with client_at(app, address) as client:
        return await client.post(
            "/api/auth/token", data={"username": username, "password": password}
        )


def assert_too_many(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 15 * 60
    assert response.json() == {
        "error": TOO_MANY["error"].format(retry_after),
        "code": TOO_MANY["code"],
    }


def window_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sign-in limits' clock, a window later."""
    monkeypatch.setattr(service, "utcnow", lambda: utcnow() + timedelta(minutes=15))


@pytest.mark.usefixtures("admin")
@pytest.mark.parametrize("username", [ADMIN_USERNAME, "nobody"])
async def test_failures_per_username_are_limited_before_the_password_is_checked(
    app: FastAPI, verified: list[str], monkeypatch: pytest.MonkeyPatch, username: str
) -> None:
    """From a new address each time: the username's count alone refuses. An unknown
    username is answered exactly as a real one, so the limit tells nothing of who exists."""
    for n in range(PER_USERNAME):
        response = await sign_in(app, f"198.51.100.{n}", username, f"guess {n}")
        assert response.status_code == 401
    assert_too_many(await sign_in(app, "198.51.100.200", username, "guess 4"))
    # Even the right password, and in another case (MariaDB would find the admin).
    assert_too_many(await sign_in(app, "198.51.100.201", username.upper(), ADMIN_PASSWORD))
    assert_too_many(await sign_in(app, "198.51.100.202", f" {username} ", ADMIN_PASSWORD))
    assert verified == [f"guess {n}" for n in range(PER_USERNAME)]
    # Refused attempts were not counted: once the window passes, the admin is in.
    window_passed(monkeypatch)
    response = await sign_in(app, "198.51.100.203", ADMIN_USERNAME, ADMIN_PASSWORD)
    assert response.status_code == 200
    assert response.json()["token_type"] == "bearer"


@pytest.mark.usefixtures("admin")
async def test_failures_per_address_are_limited_across_usernames(app: FastAPI) -> None:
    for n in range(PER_ADDRESS):
        assert (await sign_in(app, "203.0.113.7", f"user{n}", "guess")).status_code == 401
    assert_too_many(await sign_in(app, "203.0.113.7", ADMIN_USERNAME, ADMIN_PASSWORD))
    # The same /64 is the same IPv6 client; another address is not limited.
    for n in range(PER_ADDRESS):
        assert (await sign_in(app, f"2001:db8::{n}", f"v6user{n}", "guess")).status_code == 401
    assert_too_many(await sign_in(app, "2001:db8::ffff:1", ADMIN_USERNAME, ADMIN_PASSWORD))
    response = await sign_in(app, "198.51.100.9", ADMIN_USERNAME, ADMIN_PASSWORD)
    assert response.status_code == 200


@pytest.mark.usefixtures("admin")
async def test_successful_sign_ins_do_not_count(
    app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    for _ in range(PER_ADDRESS + 2):
        response = await sign_in(app, "203.0.113.7", ADMIN_USERNAME, ADMIN_PASSWORD)
        assert response.status_code == 200
    async with sessionmaker() as session:
        counted = await session.scalar(select(func.sum(SignInCount.attempts)))
    assert counted == 0


@pytest.fixture
async def second_instance(settings: Settings) -> AsyncIterator[FastAPI]:
    """Another instance of the service on the same database (no Redis)."""
    async with loopback_app(settings) as application:
        yield application


@pytest.mark.usefixtures("admin")
async def test_parallel_guesses_on_two_instances_get_exactly_the_limit(
    app: FastAPI, second_instance: FastAPI, verified: list[str]
) -> None:
    instances = (app, second_instance)
    responses = await asyncio.gather(
        *(
            sign_in(instances[n % 2], f"198.51.100.{n}", ADMIN_USERNAME, f"guess {n}")
            for n in range(24)
        )
    )
    assert Counter(response.status_code for response in responses) == Counter(
        {401: PER_USERNAME, 429: 24 - PER_USERNAME}
    )
    assert len(verified) == PER_USERNAME
