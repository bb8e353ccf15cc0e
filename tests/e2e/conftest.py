"""End-to-end fixtures: each module defines `server`, a live server configured for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets.settings import Settings
from tests.conftest import admin_client


@pytest.fixture
async def http(
    server: str, sessionmaker: async_sessionmaker[AsyncSession], settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    """An admin's client of the module's live server; the tables are emptied after each test."""
    async with admin_client(sessionmaker, settings, base_url=server, timeout=10) as client:
        yield client
