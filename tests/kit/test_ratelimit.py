"""Rate limit counts kept in each worker say so loudly when there are several workers."""

from __future__ import annotations

import logging

import pytest
from pydantic import SecretStr

from movietickets.kit.ratelimit import RateLimits
from tests.conftest import make_settings


@pytest.mark.parametrize(
    ("workers", "redis_url", "warned"),
    [(2, None, True), (4, None, True), (1, None, False), (2, "redis://127.0.0.1:6379/15", False)],
)
async def test_several_workers_without_redis_are_warned_of_at_start(
    caplog: pytest.LogCaptureFixture, workers: int, redis_url: str | None, warned: bool
) -> None:
    settings = make_settings(
        "sqlite+aiosqlite:///:memory:",
        rate_limit_enabled=True,
        workers=workers,
        redis_url=SecretStr(redis_url) if redis_url else None,
    )
    with caplog.at_level(logging.WARNING, logger="movietickets.kit.ratelimit"):
        limits = RateLimits.from_settings(settings)
    assert limits is not None
    await limits.aclose()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    if warned:
        assert warnings == [
            f"WORKERS={workers} without REDIS_URL: each worker keeps its own rate limit counts, "
            f"so a client gets up to {workers} times RATE_LIMIT_WRITES (20/minute) and "
            "RATE_LIMIT_PHONE (1/2 minutes); set REDIS_URL to share them (sign-in attempts are "
            "counted in the database, exactly)"
        ]
    else:
        assert warnings == []
