"""Admin rows, the counts of sign-in attempts, and the secrets the service keeps for itself."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Executable, delete, func, select, update
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from movietickets.db.models import Admin, ServiceSecret, SignInCount
from movietickets.kit.repository import RepositoryBase


class AdminRepository(RepositoryBase[Admin]):
    model = Admin

    async def by_username(self, username: str) -> Admin | None:
        return (
            await self.session.scalars(select(Admin).where(Admin.username == username))
        ).one_or_none()

    async def count(self) -> int:
        return (await self.session.scalar(select(func.count()).select_from(Admin))) or 0


class ServiceSecretRepository(RepositoryBase[ServiceSecret]):
    model = ServiceSecret

    async def get_or_add(self, name: str, value: str) -> str:
        """The stored value of `name`, storing `value` first if there is none (a concurrent
        first store wins: its value is returned)."""
        stored = await self.get(name)
        if stored is not None:
            return stored.value
        try:
            async with self.session.begin_nested():
                await self.add(ServiceSecret(name=name, value=value))
        except IntegrityError:
            stored = await self.session.get(ServiceSecret, name, populate_existing=True)
            assert stored is not None
            return stored.value
        return value


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
