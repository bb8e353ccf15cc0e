"""Rate limits, counted by the `limits` library in memory or in Redis.

    writes     RATE_LIMIT_WRITES per client address on every POST, PUT, PATCH and DELETE
               but Daraja's callbacks (`ratelimit_middleware`). A fixed window: one counter
               per address, cheap enough for every write.
    payments   RATE_LIMIT_PHONE per phone number, movie and quantity (which fix the amount) on
               make-payment (`PurchaseService`). Daraja refuses the same amount to the same
               phone within 2 minutes; the client hears it from us first. A moving window,
               exact like Daraja's rule.

Counts are kept in the process, or in Redis when REDIS_URL is set so that every instance
shares them. The limits fail open: while Redis cannot be reached every request goes through
(a payment refused for want of a counter is worse than a limit not applied), a warning is
logged, and Redis is left alone for a few seconds instead of being waited for on every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter, RateLimiter
from limits.errors import StorageError

from movietickets.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

# How long a request waits for Redis before going through unlimited.
STORE_TIMEOUT_SECONDS = 0.5
# After Redis failed, how long requests go through without asking it.
STORE_RETRY_SECONDS = 5.0


class RateLimits:
    def __init__(
        self,
        storage: Storage,
        *,
        writes: RateLimitItem,
        payments: RateLimitItem,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.storage = storage
        self.writes = writes
        self.payments = payments
        self._fixed_window = FixedWindowRateLimiter(storage)
        self._moving_window = MovingWindowRateLimiter(storage)
        self._close = close
        self._store_down_until = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimits | None:
        """The configured limits; None when RATE_LIMIT_ENABLED is false."""
        if not settings.rate_limit_enabled:
            return None
        writes = parse(settings.rate_limit_writes)
        payments = parse(settings.rate_limit_phone)
        if settings.redis_url is None:
            return cls(MemoryStorage(), writes=writes, payments=payments)
        # Imported only when used: redis-py adds some 8 MB to every worker.
        import redis.asyncio
        from limits.aio.storage import RedisStorage

        redis_url = settings.redis_url.get_secret_value()
        # Our own pool: short timeouts and no retries, so that a missing Redis costs little.
        pool = redis.asyncio.ConnectionPool.from_url(
            redis_url,
            socket_connect_timeout=STORE_TIMEOUT_SECONDS,
            socket_timeout=STORE_TIMEOUT_SECONDS,
        )
        options: dict[str, Any] = {"connection_pool": pool}
        storage = RedisStorage(
            f"async+{redis_url}",
            implementation="redispy",
            key_prefix=settings.rate_limit_key_prefix,
            wrap_exceptions=True,
            **options,
        )
        return cls(storage, writes=writes, payments=payments, close=pool.aclose)

    async def aclose(self) -> None:
        if isinstance(self.storage, MemoryStorage) and self.storage.timer is not None:
            self.storage.timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.storage.timer
        if self._close is not None:
            await self._close()

    async def hit_write(self, client: str) -> int | None:
        """Counts a write from `client`: None if allowed, else the seconds until it would be."""
        return await self._hit(self._fixed_window, self.writes, "writes", client)

    async def payment_wait(self, phone: str, movie_id: int, quantity: int) -> int | None:
        """None if this payment may be sent now (counting nothing), else the seconds to wait."""
        keys = _payment_keys(phone, movie_id, quantity)
        allowed = await self._guarded(lambda: self._moving_window.test(self.payments, *keys))
        if allowed is None or allowed:
            return None
        return await self._retry_after(self._moving_window, self.payments, keys)

    async def count_payment(self, phone: str, movie_id: int, quantity: int) -> int | None:
        """Counts a payment about to be sent: None if allowed, else the seconds to wait."""
        return await self._hit(
            self._moving_window, self.payments, *_payment_keys(phone, movie_id, quantity)
        )

    async def forget_payment(self, phone: str, movie_id: int, quantity: int) -> None:
        """Un-counts a payment that never reached the phone (Daraja refused the push)."""
        keys = _payment_keys(phone, movie_id, quantity)
        await self._guarded(lambda: self._moving_window.clear(self.payments, *keys))

    async def _hit(self, strategy: RateLimiter, item: RateLimitItem, *keys: str) -> int | None:
        allowed = await self._guarded(lambda: strategy.hit(item, *keys))
        if allowed is None or allowed:
            return None
        return await self._retry_after(strategy, item, keys)

    async def _retry_after(
        self, strategy: RateLimiter, item: RateLimitItem, keys: tuple[str, ...]
    ) -> int:
        stats = await self._guarded(lambda: strategy.get_window_stats(item, *keys))
        if stats is None:
            return item.get_expiry()
        return max(1, math.ceil(stats.reset_time - time.time()))

    async def _guarded(self, operation: Callable[[], Awaitable[T]]) -> T | None:
        """The operation's result; None (let the request through) if the store is away."""
        if time.monotonic() < self._store_down_until:
            return None
        try:
            return await operation()
        except (StorageError, OSError, TimeoutError) as exc:
            self._store_down_until = time.monotonic() + STORE_RETRY_SECONDS
            logger.warning(
                "rate limit store unreachable, requests go through unlimited for %.0f s: %s",
                STORE_RETRY_SECONDS,
                exc,
            )
            return None


def _payment_keys(phone: str, movie_id: int, quantity: int) -> tuple[str, ...]:
    return ("payment", phone, str(movie_id), str(quantity))
