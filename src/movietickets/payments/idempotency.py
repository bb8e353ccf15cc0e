"""`Idempotency-Key` for make-payment, as Stripe and the IETF draft define it.

The first request with a key runs; its answer is stored (in the database, shared by every
instance) and replayed to later requests with the same key and the same body for 24 hours.
The same key with another body is refused (422); while the first request is still running a
duplicate gets 409 with Retry-After. Answers that created no ticket (validation errors, sold
out) are not stored, so the client may retry with the same key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from pydantic import BaseModel

from movietickets.db.engine import Sessionmaker, locked_transaction
from movietickets.db.models import IdempotencyKey
from movietickets.errors import AppError, IdempotencyKeyInUse, IdempotencyKeyReused
from movietickets.kit.clock import utcnow
from movietickets.payments.repository import IdempotencyKeyRepository

T = TypeVar("T", bound=BaseModel)

KEY_LIFETIME = timedelta(hours=24)
# A request still marked running after this long died with its process: its key is reusable.
ABANDONED_AFTER = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status_code: int
    body: bytes


def fingerprint(request: BaseModel) -> str:
    return hashlib.sha256(request.model_dump_json().encode()).hexdigest()


class IdempotencyService:
    def __init__(self, sessionmaker: Sessionmaker) -> None:
        self.sessionmaker = sessionmaker

    async def run(
        self, key: str, request: BaseModel, operation: Callable[[], Awaitable[T]]
    ) -> T | StoredResponse:
        """Runs `operation` once per key; later calls get the stored answer."""
        request_hash = fingerprint(request)
        stored = await self._reserve(key, request_hash)
        if stored is not None:
            return stored
        try:
            result = await operation()
        except AppError as exc:
            if "ticketId" in exc.extra:
                body = json.dumps(exc.body().model_dump(exclude_none=True)).encode()
                await self._complete(key, exc.status_code, body)
            else:
                await self._release(key)
            raise
        except BaseException:
            await self._release(key)
            raise
        await self._complete(key, 200, result.model_dump_json().encode())
        return result

    async def _reserve(self, key: str, request_hash: str) -> StoredResponse | None:
        now = utcnow()
        async with locked_transaction(self.sessionmaker) as session:
            keys = IdempotencyKeyRepository(session)
            row = await keys.get_for_update(key)
            if row is not None and (
                row.expires_at <= now
                or (row.response_status is None and row.created_at < now - ABANDONED_AFTER)
            ):
                await keys.delete(row)
                row = None
            if row is None:
                reserved = await keys.add_new(
                    IdempotencyKey(
                        key=key,
                        request_hash=request_hash,
                        created_at=now,
                        expires_at=now + KEY_LIFETIME,
                    )
                )
                if not reserved:  # another instance inserted the same key a moment ago
                    raise self._in_use()
                return None
            if row.request_hash != request_hash:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was used with a different request body"
                )
            if row.response_status is None or row.response_body is None:
                raise self._in_use()
            return StoredResponse(row.response_status, row.response_body.encode())

    @staticmethod
    def _in_use() -> IdempotencyKeyInUse:
        return IdempotencyKeyInUse(
            "A request with this Idempotency-Key is still being processed",
            retry_after=1,
        )

    async def _complete(self, key: str, status_code: int, body: bytes) -> None:
        async with self.sessionmaker() as session, session.begin():
            await IdempotencyKeyRepository(session).complete(key, status_code, body.decode())

    async def _release(self, key: str) -> None:
        async with self.sessionmaker() as session, session.begin():
            await IdempotencyKeyRepository(session).delete_key(key)
