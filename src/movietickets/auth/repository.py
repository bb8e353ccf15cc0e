"""Admin rows, and the counts of sign-in attempts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Executable, delete, func, select, update
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from movietickets.db.models import Admin, SignInCount
from movietickets.kit.repository import RepositoryBase


class AdminRepository(RepositoryBase[Admin]):
    model = Admin

    async def by_username(self, username: str) -> Admin | None:
        return (
            await self.session.scalars(select(Admin).where(Admin.username == username))
        ).one_or_none()

    async def count(self) -> int:
        return (await self.session.scalar(select(func.count()).select_from(Admin))) or 0


class SignInCountRepository:
    """One row per key and window: its attempts, counted up with one atomic upsert."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def hit(self, windows: Sequence[tuple[str, datetime]]) -> list[int]:
        """Counts one attempt in each (key, window start), in that order; the new counts.

        Each upsert locks its row until the transaction ends, so concurrent attempts are
        counted one after the other (callers pass the keys in one sorted order).
        """
        connection = await self.session.connection()
        counts = []
        for key, window_start in windows:
            values = {"key": key, "windowStart": window_start, "attempts": 1}
            statement: Executable
            if connection.dialect.name == "sqlite":
                insert = sqlite.insert(SignInCount).values(values)
                statement = insert.on_conflict_do_update(
                    index_elements=[SignInCount.key, SignInCount.window_start],
                    set_={"attempts": SignInCount.attempts + 1},
                )
            else:
                statement = (
                    mysql.insert(SignInCount)
                    .values(values)
                    .on_duplicate_key_update(attempts=SignInCount.attempts + 1)
                )
            await connection.execute(statement)
            counts.append(
                int(
                    await connection.scalar(
                        select(SignInCount.attempts).where(
                            SignInCount.key == key, SignInCount.window_start == window_start
                        )
                    )
                    or 0
                )
            )
        return counts

    async def unhit(self, windows: Sequence[tuple[str, datetime]]) -> None:
        """Takes back one attempt in each (key, window start)."""
        connection = await self.session.connection()
        for key, window_start in windows:
            await connection.execute(
                update(SignInCount)
                .where(
                    SignInCount.key == key,
                    SignInCount.window_start == window_start,
                    SignInCount.attempts > 0,
                )
                .values(attempts=SignInCount.attempts - 1)
            )

    async def purge_before(self, window_start: datetime) -> None:
        await self.session.execute(
            delete(SignInCount).where(SignInCount.window_start < window_start)
        )
