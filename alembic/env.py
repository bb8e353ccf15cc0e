"""Alembic environment: async engine, URL from the service settings unless given explicitly."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from movietickets.db import models  # noqa: F401  (registers the tables)
from movietickets.db.base import Base, UTCDateTime
from movietickets.db.charset import connect_args
from movietickets.settings import Settings

config = context.config
# Configured by `movietickets migrate` and the tests; `alembic` on the command line sets it up.
if config.config_file_name is not None and not config.attributes.get("skip_logging"):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def _database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    return url if url else Settings().database_url


def _render_item(kind: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    if kind == "type" and isinstance(obj, UTCDateTime):
        autogen_context.imports.add("from movietickets.db.base import UTCDateTime")
        return "UTCDateTime()"
    return False


def run_migrations_offline() -> None:
    context.configure(
        url=_database_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection: Connection) -> None:
    # Batch mode lets the same migrations alter tables on SQLite.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        render_item=_render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_online() -> None:
    url = _database_url()
    engine = create_async_engine(url, poolclass=pool.NullPool, connect_args=connect_args(url))
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    asyncio.run(run_migrations_online())
