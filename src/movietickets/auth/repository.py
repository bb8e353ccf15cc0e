"""Admin rows."""

from __future__ import annotations

from sqlalchemy import func, select

from movietickets.db.models import Admin
from movietickets.kit.repository import RepositoryBase


class AdminRepository(RepositoryBase[Admin]):
    model = Admin

    async def by_username(self, username: str) -> Admin | None:
        return (
            await self.session.scalars(select(Admin).where(Admin.username == username))
        ).one_or_none()

    async def count(self) -> int:
        return (await self.session.scalar(select(func.count()).select_from(Admin))) or 0
