"""The base of every repository: the only classes that hold SQL. They flush, never commit."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from movietickets.db.base import Base

ModelT = TypeVar("ModelT", bound=Base)


class RepositoryBase(Generic[ModelT]):
    """Rows of one model; subclasses add the queries of their feature."""

    model: type[ModelT]

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: ModelT) -> ModelT:
        self.session.add(row)
        await self.session.flush()
        return row

    async def get(self, ident: Any) -> ModelT | None:
        return await self.session.get(self.model, ident)

    async def get_for_update(self, ident: Any) -> ModelT | None:
        """The row, locked until the transaction ends, read afresh from the database."""
        return await self.session.get(
            self.model, ident, with_for_update=True, populate_existing=True
        )

    async def delete(self, row: ModelT) -> None:
        await self.session.delete(row)
        await self.session.flush()

    async def flush(self) -> None:
        await self.session.flush()
