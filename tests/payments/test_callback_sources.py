"""Callbacks from outside MPESA_CALLBACK_ALLOWED_IPS are refused, whatever they claim.

The socket peer is set with `httpx.ASGITransport(client=...)`; X-Forwarded-For counts only
when that peer is one of TRUSTED_PROXIES.
"""

from __future__ import annotations

import json
import logging
from ipaddress import ip_network
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets.settings import Settings
from tests.helpers import callback_body, ticket
from tests.payments.test_callbacks import ACK, callback_log, pending_purchase

SAFARICOM = "196.201.214.200"
ELSEWHERE = "203.0.113.9"
PROXY = "10.0.0.5"
TOKEN = "s3cret-token"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "mpesa_callback_token": SecretStr(TOKEN),
            "mpesa_callback_allowed_ips": [
                ip_network("196.201.214.0/24"),
                ip_network("196.201.213.114/32"),
                ip_network("2001:db8:5::/48"),
            ],
            "trusted_proxies": [ip_network("10.0.0.0/8")],
        }
    )


@pytest.fixture
async def purchase(client: httpx.AsyncClient) -> tuple[int, str]:
    return await pending_purchase(client)


async def callback_from(
    app: FastAPI,
    peer: str,
    body: Any,
    *,
    token: str = TOKEN,
    forwarded_for: str | None = None,
    path: str = "/api/payment-callback",
) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    transport = httpx.ASGITransport(app=app, client=(peer, 40123))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return await client.post(
            f"{path}?token={token}", content=json.dumps(body).encode(), headers=headers
        )


async def assert_refused(
    response: httpx.Response,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    ticket_id: int,
    *,
    source_ip: str,
    detail: str,
) -> None:
    assert response.status_code == 403
    assert response.json() == {"error": "Callback refused", "code": "forbidden"}
    assert (await ticket(client, ticket_id))["paymentStatus"] == "Pending"
    [entry] = await callback_log(sessionmaker)
    assert (entry.outcome, entry.detail, entry.source_ip) == ("refused", detail, source_ip)
    assert entry.ticket_id is None


@pytest.mark.parametrize("peer", [SAFARICOM, "196.201.213.114", "2001:db8:5::1"])
async def test_a_callback_from_an_allowed_address_is_applied(
    app: FastAPI,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    purchase: tuple[int, str],
    peer: str,
) -> None:
    ticket_id, checkout_id = purchase
    response = await callback_from(app, peer, callback_body(checkout_id))
    assert response.json() == ACK
    assert (await ticket(client, ticket_id))["paymentStatus"] == "Paid"
    [entry] = await callback_log(sessionmaker)
    assert (entry.outcome, entry.source_ip) == ("applied", peer)


@pytest.mark.parametrize("path", ["/api/payment-callback", "/api/mpesa-callback"])
async def test_a_forged_callback_from_elsewhere_is_refused_logged_and_never_applied(
    app: FastAPI,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    purchase: tuple[int, str],
    caplog: pytest.LogCaptureFixture,
    path: str,
) -> None:
    ticket_id, checkout_id = purchase
    with caplog.at_level(logging.WARNING, logger="movietickets.payments.callbacks"):
        response = await callback_from(app, ELSEWHERE, callback_body(checkout_id), path=path)
    await assert_refused(
        response,
        client,
        sessionmaker,
        ticket_id,
        source_ip=ELSEWHERE,
        detail="address not allowed",
    )
    assert any(
        record.levelno == logging.WARNING and ELSEWHERE in record.getMessage()
        for record in caplog.records
    )


async def test_a_wrong_secret_from_an_allowed_address_is_refused(
    app: FastAPI,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    purchase: tuple[int, str],
) -> None:
    ticket_id, checkout_id = purchase
    response = await callback_from(app, SAFARICOM, callback_body(checkout_id), token="guess")
    await assert_refused(
        response, client, sessionmaker, ticket_id, source_ip=SAFARICOM, detail="bad token"
    )


async def test_forwarded_for_from_a_trusted_proxy_names_the_client(
    app: FastAPI,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    purchase: tuple[int, str],
) -> None:
    ticket_id, checkout_id = purchase
    response = await callback_from(app, PROXY, callback_body(checkout_id), forwarded_for=SAFARICOM)
    assert response.json() == ACK
    assert (await ticket(client, ticket_id))["paymentStatus"] == "Paid"
    [entry] = await callback_log(sessionmaker)
    assert (entry.outcome, entry.source_ip) == ("applied", SAFARICOM)


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(
    app: FastAPI,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    purchase: tuple[int, str],
) -> None:
    ticket_id, checkout_id = purchase
    response = await callback_from(
        app, ELSEWHERE, callback_body(checkout_id), forwarded_for=SAFARICOM
    )
    await assert_refused(
        response,
        client,
        sessionmaker,
        ticket_id,
        source_ip=ELSEWHERE,
        detail="address not allowed",
    )


async def test_an_allowed_address_prepended_behind_our_proxy_is_ignored(
    app: FastAPI,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    purchase: tuple[int, str],
) -> None:
    # The forger sent "X-Forwarded-For: SAFARICOM"; our proxy appended the forger's address.
    ticket_id, checkout_id = purchase
    response = await callback_from(
        app, PROXY, callback_body(checkout_id), forwarded_for=f"{SAFARICOM}, {ELSEWHERE}"
    )
    await assert_refused(
        response,
        client,
        sessionmaker,
        ticket_id,
        source_ip=ELSEWHERE,
        detail="address not allowed",
    )


async def test_the_proxy_itself_is_not_an_allowed_source(
    app: FastAPI,
    client: httpx.AsyncClient,
    sessionmaker: async_sessionmaker[AsyncSession],
    purchase: tuple[int, str],
) -> None:
    ticket_id, checkout_id = purchase
    response = await callback_from(app, PROXY, callback_body(checkout_id))
    await assert_refused(
        response, client, sessionmaker, ticket_id, source_ip=PROXY, detail="address not allowed"
    )


class TestWithoutAllowlist:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"mpesa_callback_allowed_ips": []})

    async def test_any_address_with_the_secret_is_applied(
        self, app: FastAPI, client: httpx.AsyncClient, purchase: tuple[int, str]
    ) -> None:
        ticket_id, checkout_id = purchase
        response = await callback_from(app, ELSEWHERE, callback_body(checkout_id))
        assert response.json() == ACK
        assert (await ticket(client, ticket_id))["paymentStatus"] == "Paid"
