"""Declarative base with a naming convention, and a UTC datetime column type."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Generic, TypeVar

from sqlalchemy import DateTime, Dialect, MetaData, String
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator, TypeEngine

# Stable constraint names on SQLite and MySQL alike, so migrations can address them.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
}


# MySQL/MariaDB: every table stores full UTF-8 (4-byte characters such as emoji included),
# whatever the database's default (`CREATE DATABASE` is latin1 on many servers). Collations
# are compared on both MariaDB and MySQL (utf8mb4_0900_ai_ci exists only on MySQL 8).
MYSQL_CHARSET = "utf8mb4"
MYSQL_COLLATION = "utf8mb4_unicode_ci"
# Identifiers (receipt numbers) compared byte for byte, as SQLite compares them: no case or
# accent folding (trailing spaces still are ignored: callbacks' texts are stripped).
MYSQL_BINARY_COLLATION = "utf8mb4_bin"
TABLE_OPTIONS = {"mysql_charset": MYSQL_CHARSET, "mysql_collate": MYSQL_COLLATION}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores an aware datetime as naive UTC and gives it back aware, on every backend.

    Neither SQLite nor MySQL's DATETIME keep an offset; normalising on the way in means a
    value never depends on the server's or the session's time zone.
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[datetime]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware datetime")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


E = TypeVar("E", bound=enum.StrEnum)


class StrEnumColumn(TypeDecorator[E], Generic[E]):
    """A `StrEnum` stored as its string value (a VARCHAR with a CHECK in the migration).

    Read back as the enum member, so that code and type checker see the enum, not a str.
    """

    impl = String
    cache_ok = True

    def __init__(self, enum_type: type[E], length: int) -> None:
        super().__init__(length)
        self.enum_type = enum_type

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.enum_type(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        return None if value is None else self.enum_type(value)
