"""Rate limits over real HTTP: shared by two instances through Redis, and not dodged by
sending X-Forwarded-For (uvicorn's proxy headers are off; no proxy is trusted)."""

from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.live_server import live_server
from tests.redis_store import REDIS_TEST_URL, redis_key_prefix


async def test_two_instances_share_one_limit(database_url: str, engine: AsyncEngine) -> None:
    async with redis_key_prefix() as prefix:
        with (
            live_server(
                database_url,
                RATE_LIMIT_ENABLED="true",
                RATE_LIMIT_WRITES="3/minute",
                REDIS_URL=REDIS_TEST_URL,
                RATE_LIMIT_KEY_PREFIX=prefix,
            ) as first,
            live_server(
                database_url,
                RATE_LIMIT_ENABLED="true",
                RATE_LIMIT_WRITES="3/minute",
                REDIS_URL=REDIS_TEST_URL,
                RATE_LIMIT_KEY_PREFIX=prefix,
            ) as second,
        ):
            async with httpx.AsyncClient() as http:
                responses = [
                    await http.post(
                        f"{base_url}/api/query-payment-status",
                        json={"checkoutRequestId": "ws_CO_unknown"},
                        headers={"X-Forwarded-For": f"198.51.100.{n}"},
                    )
                    for n, base_url in enumerate([first, second, first, second])
                ]
    assert [response.status_code for response in responses] == [404, 404, 404, 429]
    refused = responses[-1]
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "server" not in refused.headers
    assert refused.headers["x-content-type-options"] == "nosniff"
