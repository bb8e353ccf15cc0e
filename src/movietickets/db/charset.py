"""Full UTF-8 on MySQL/MariaDB: the connection's character set, and the check that refuses a
database that cannot store 4-byte characters.

A database made with a plain `CREATE DATABASE` is latin1 (or utf8mb3) on many servers; there,
a buyer named `Wanjirũ 😀` would get a 500. The migrations create and convert every table to
utf8mb4 (`TABLE_OPTIONS`, migration 0002) and the service talks utf8mb4; this check finds a
table or a connection that still cannot, so that the service refuses to start instead.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.ext.asyncio import AsyncEngine

from movietickets.db.base import MYSQL_CHARSET, Base


class UnicodeStorageError(RuntimeError):
    """The database cannot store 4-byte UTF-8 characters; the message says where and what to do."""


def is_mysql_url(database_url: str) -> bool:
    return database_url.startswith(("mysql", "mariadb"))


def connect_args(database_url: str) -> dict[str, Any]:
    """Driver arguments that make a MySQL/MariaDB connection speak utf8mb4 (none for SQLite)."""
    return {"charset": MYSQL_CHARSET} if is_mysql_url(database_url) else {}


_CONNECTION = text(
    "SELECT @@character_set_client, @@character_set_connection, @@character_set_results"
)
_COLUMNS = text(
    "SELECT TABLE_NAME, COLUMN_NAME, CHARACTER_SET_NAME FROM information_schema.COLUMNS"
    " WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME IN :tables"
    " AND CHARACTER_SET_NAME IS NOT NULL AND CHARACTER_SET_NAME <> :charset"
    " ORDER BY TABLE_NAME, ORDINAL_POSITION"
).bindparams(bindparam("tables", expanding=True))

_ADVICE = (
    "run `movietickets migrate` (it converts the tables to utf8mb4), or ALTER TABLE ..."
    " CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
)


async def check_unicode_storage(engine: AsyncEngine) -> None:
    """Raises UnicodeStorageError unless the connection and every text column of the service's
    tables are utf8mb4. Nothing to check on SQLite (always UTF-8); tables not created yet are
    not checked."""
    if engine.dialect.name not in ("mysql", "mariadb"):
        return
    async with engine.connect() as connection:
        session_charsets = set((await connection.execute(_CONNECTION)).one())
        columns = (
            await connection.execute(
                _COLUMNS, {"tables": sorted(Base.metadata.tables), "charset": MYSQL_CHARSET}
            )
        ).all()
    if session_charsets != {MYSQL_CHARSET}:
        raise UnicodeStorageError(
            "the database connection does not use utf8mb4 (it uses "
            f"{', '.join(sorted(str(name) for name in session_charsets))}): 4-byte characters "
            "such as emoji cannot be stored; check DATABASE_URL and the server's init_connect"
        )
    if columns:
        table, column, charset = columns[0]
        others = f" and {len(columns) - 1} more columns" if len(columns) > 1 else ""
        raise UnicodeStorageError(
            f"the database cannot store 4-byte characters such as emoji: column {table}.{column} "
            f"is {charset}{others}; {_ADVICE}"
        )
