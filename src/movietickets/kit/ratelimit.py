"""Rate limits, counted by the `limits` library in memory or in Redis.

    writes     RATE_LIMIT_WRITES per client address on every POST, PUT, PATCH and DELETE
               but Daraja's callbacks (`ratelimit_middleware`). A fixed window: one counter
               per address, cheap enough for every write.
    payments   RATE_LIMIT_PHONE per phone number, movie and quantity (which fix the amount) on
               make-payment (`RepeatedPayment`). Daraja refuses the same amount to the same
               phone within 2 minutes; the client hears it from us first. A moving window,
               exact like Daraja's rule.
    refused    RATE_LIMIT_REFUSED_CALLBACKS per client address on callbacks that fail the
    callbacks  authenticity checks (`hit_refused_callback`, counted by the callback service
               once it knows): each one is stored and logged, so a flood of forgeries must not
               fill the database. Callbacks with the right secret never count. A fixed window.

Counts are kept in the process, or in Redis when REDIS_URL is set so that every instance
shares them (several workers without Redis each count alone: a warning says so at start;
admin sign-in attempts are counted in the database instead, see `auth.service`). The
limits fail open: while Redis cannot be reached every request goes through (a payment refused
for want of a counter is worse than a limit not applied), a warning is logged, and Redis is
left alone for a few seconds instead of being waited for on every request.
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
        refused_callbacks: RateLimitItem,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.storage = storage
        self.writes = writes
        self.payments = payments
        self.refused_callbacks = refused_callbacks
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
        refused = parse(settings.rate_limit_refused_callbacks)
        if settings.redis_url is None:
            if settings.workers > 1:
                logger.warning(
                    "WORKERS=%d without REDIS_URL: each worker keeps its own rate limit counts, "
                    "so a client gets up to %d times RATE_LIMIT_WRITES (%s) and "
                    "RATE_LIMIT_PHONE (%s); set REDIS_URL to share them (sign-in attempts are "
                    "counted in the database, exactly)",
                    settings.workers,
                    settings.workers,
                    settings.rate_limit_writes,
                    settings.rate_limit_phone,
                )
            return cls(MemoryStorage(), writes=writes, payments=payments, refused_callbacks=refused)
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
        return cls(
            storage,
            writes=writes,
            payments=payments,
            refused_callbacks=refused,
            close=pool.aclose,
        )

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

    async def hit_refused_callback(self, client: str) -> int | None:
        """Counts a refused callback from `client`: None if it may be stored, else the seconds
        until one would be."""
        return await self._hit(
            self._fixed_window, self.refused_callbacks, "refused-callbacks", client
        )

    def repeated_payment(self, *key: str | int) -> RepeatedPayment:
        """The RATE_LIMIT_PHONE counter of one payment: phone, showing and quantity."""
        return RepeatedPayment(self, ("payment", *(str(part) for part in key)))

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


class RepeatedPayment:
    """One payment's place in Daraja's "not the same amount to the same phone twice" rule.

    The protocol, in order: `wait()` before seats are held (counts nothing), `count()` just
    before the push is sent (a concurrent twin may have counted first), and `forget()` when
    Daraja refused the push (no prompt reached the phone, so Daraja would take a retry).
    Without rate limits (`limits` None) every payment may go.
    """

    def __init__(self, limits: RateLimits | None, keys: tuple[str, ...]) -> None:
        self._limits = limits
        self._keys = keys

    async def wait(self) -> int | None:
        """None if this payment may be sent now, else the seconds to wait."""
        limits = self._limits
        if limits is None:
            return None
        strategy, item = limits._moving_window, limits.payments
        allowed = await limits._guarded(lambda: strategy.test(item, *self._keys))
        if allowed is None or allowed:
            return None
        return await limits._retry_after(strategy, item, self._keys)

    async def count(self) -> int | None:
        """Counts the payment about to be sent: None if allowed, else the seconds to wait."""
        if self._limits is None:
            return None
        return await self._limits._hit(
            self._limits._moving_window, self._limits.payments, *self._keys
        )

    async def forget(self) -> None:
        """Un-counts a payment that never reached the phone."""
        limits = self._limits
        if limits is not None:
            await limits._guarded(lambda: limits._moving_window.clear(limits.payments, *self._keys))


def repeated_payment(limits: RateLimits | None, *key: str | int) -> RepeatedPayment:
    """`RepeatedPayment` of one payment, whether or not rate limits are enabled."""
    if limits is None:
        return RepeatedPayment(None, ())
    return limits.repeated_payment(*key)
