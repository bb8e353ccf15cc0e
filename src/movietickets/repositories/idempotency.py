"""Idempotency key rows."""

from __future__ import annotations

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from movietickets.db.models import IdempotencyKey


class IdempotencyKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_for_update(self, key: str) -> IdempotencyKey | None:
        statement = select(IdempotencyKey).where(IdempotencyKey.key == key).with_for_update()
        result = await self.session.scalars(statement.execution_options(populate_existing=True))
        return result.one_or_none()

    async def add(self, row: IdempotencyKey) -> None:
        self.session.add(row)
        await self.session.flush()

    async def delete(self, row: IdempotencyKey) -> None:
        await self.session.delete(row)
        await self.session.flush()

    async def complete(self, key: str, status_code: int, body: str) -> None:
        await self.session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == key)
            .values(response_status=status_code, response_body=body)
        )

    async def delete_key(self, key: str) -> None:
        await self.session.execute(delete(IdempotencyKey).where(IdempotencyKey.key == key))
