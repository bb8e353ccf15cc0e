"""Payments tests marked `fake_daraja` get an app talking to a Daraja that respx plays (for
fault injection) instead of the built-in simulator; the others get the root conftest's app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import respx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine

from movietickets.app import create_app
from movietickets.daraja import wire
from movietickets.settings import Settings
from tests.conftest import loopback_app

DARAJA = "https://daraja.test"


FAKE_DARAJA_SETTINGS = {
    "simulator_enabled": False,
    "mpesa_consumer_key": SecretStr("key"),
    "mpesa_consumer_secret": SecretStr("secret"),
    "mpesa_base_url": DARAJA,
    "mpesa_read_timeout_seconds": 1.0,
    "reconcile_give_up_seconds": 0.01,
    "reconcile_first_query_seconds": 0.0,
}


def _fake_daraja(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker("fake_daraja") is not None


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    if not _fake_daraja(request):
        return settings
    return settings.model_copy(update=FAKE_DARAJA_SETTINGS)


@pytest.fixture
def daraja() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=DARAJA, assert_all_called=False) as router:
        router.get(wire.OAUTH_PATH, name="oauth").respond(
            json={"access_token": "token", "expires_in": "3599"}
        )
        router.post(wire.STK_PUSH_PATH, name="push")
        router.post(wire.STK_QUERY_PATH, name="query")
        yield router


@pytest.fixture
async def app(
    settings: Settings, engine: AsyncEngine, request: pytest.FixtureRequest
) -> AsyncIterator[FastAPI]:
    if not _fake_daraja(request):
        async with loopback_app(settings) as application:
            yield application
        return
    request.getfixturevalue("daraja")
    application = create_app(settings)
    async with LifespanManager(application):
        yield application


def accepted(checkout_request_id: str) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "MerchantRequestID": "29115-34620561-1",
            "CheckoutRequestID": checkout_request_id,
            "ResponseCode": "0",
            "ResponseDescription": "Success. Request accepted for processing",
            "CustomerMessage": "Success. Request accepted for processing",
        },
    )


def query_answer(checkout_request_id: str, result_code: str = "0") -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "ResponseCode": "0",
            "ResponseDescription": "The service request has been accepted successsfully",
            "MerchantRequestID": "29115-34620561-1",
            "CheckoutRequestID": checkout_request_id,
            "ResultCode": result_code,
            "ResultDesc": "The service request is processed successfully.",
        },
    )
