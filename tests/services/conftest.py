"""An app talking to a Daraja that respx plays, for fault injection."""

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

DARAJA = "https://daraja.test"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "simulator_enabled": False,
            "mpesa_consumer_key": SecretStr("key"),
            "mpesa_consumer_secret": SecretStr("secret"),
            "mpesa_base_url": DARAJA,
            "mpesa_read_timeout_seconds": 1.0,
            "reconcile_give_up_seconds": 0.01,
            "reconcile_first_query_seconds": 0.0,
        }
    )


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
    settings: Settings, engine: AsyncEngine, daraja: respx.MockRouter
) -> AsyncIterator[FastAPI]:
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
