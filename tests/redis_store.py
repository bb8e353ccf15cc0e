"""The test Redis (127.0.0.1:6379 db 15, or REDIS_TEST_URL), shared by test runs.

Each user gets a key prefix of its own, deleted afterwards, so that runs never see each
other's counts. Without Redis the test is skipped, except under CI=true, where it fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import redis.asyncio
from redis.exceptions import RedisError

from tests.conftest import IN_CI

REDIS_TEST_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/15")


@asynccontextmanager
async def redis_key_prefix() -> AsyncIterator[str]:
    client = redis.asyncio.Redis.from_url(REDIS_TEST_URL)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        message = f"Redis not reachable at {REDIS_TEST_URL}: {exc}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    prefix = f"movietickets-test-{uuid.uuid4().hex}"
    try:
        yield prefix
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
