"""Admin rows, and the secrets the service keeps for itself."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from movietickets.db.models import Admin, ServiceSecret
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
