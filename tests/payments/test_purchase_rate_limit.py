"""The per-phone limit and Daraja's answers: only a push that may have reached the phone counts."""

from __future__ import annotations

import httpx
import pytest
import respx

from movietickets.settings import Settings
from tests.helpers import buy, create_movie
from tests.payments.conftest import accepted

pytestmark = pytest.mark.fake_daraja


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "rate_limit_enabled": True,
            "rate_limit_writes": "100/minute",
            "rate_limit_phone": "1/2 minutes",
        }
    )


async def test_a_push_without_an_answer_is_counted(
    client: httpx.AsyncClient, daraja: respx.MockRouter
) -> None:
    """The prompt may be on the phone: Daraja would refuse a repeat."""
    daraja["push"].side_effect = httpx.ReadTimeout
    movie = await create_movie(client)
    assert (await buy(client, movie["movieId"])).status_code == 504
    refused = await buy(client, movie["movieId"])
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert daraja["push"].call_count == 1


@pytest.mark.parametrize(
    "refusal",
    [
        httpx.Response(500, json={"errorCode": "500.003.1001", "errorMessage": "Internal"}),
        httpx.Response(503, json={"errorCode": "500.003.02", "errorMessage": "Spike arrest"}),
        httpx.ConnectError("refused"),
    ],
    ids=["500", "503", "connect error"],
)
async def test_a_push_daraja_refused_is_not_counted(
    client: httpx.AsyncClient, daraja: respx.MockRouter, refusal: httpx.Response | Exception
) -> None:
    daraja["push"].side_effect = [refusal, accepted("ws_CO_retry")]
    movie = await create_movie(client)
    assert (await buy(client, movie["movieId"])).status_code in (502, 503)
    retried = await buy(client, movie["movieId"])
    assert retried.status_code == 200, retried.text
    assert daraja["push"].call_count == 2
