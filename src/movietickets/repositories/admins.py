"""Admin rows."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from movietickets.db.models import Admin


class AdminRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_username(self, username: str) -> Admin | None:
        return (
            await self.session.scalars(select(Admin).where(Admin.username == username))
        ).one_or_none()

    async def count(self) -> int:
        return (await self.session.scalar(select(func.count()).select_from(Admin))) or 0

    async def add(self, admin: Admin) -> Admin:
        self.session.add(admin)
        await self.session.flush()
        return admin
