"""Whether a DATABASE_URL is one the service can use (read when the settings are)."""

from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

EXAMPLE = "sqlite+aiosqlite:///./movietickets.db or mysql+asyncmy://user:pass@host:3306/db"


def check_database_url(value: str) -> str:
    """`value` if it names an async dialect whose driver is installed; else ValueError."""
    try:
        url = make_url(value)
        dialect = url.get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError):
        raise ValueError(f"not a database URL the service can use, such as {EXAMPLE}") from None
    if not dialect.is_async:
        raise ValueError(f"needs an async driver, such as {EXAMPLE}")
    try:
        dialect.import_dbapi()
    except ImportError:
        raise ValueError(f"the {url.drivername} driver is not installed; use {EXAMPLE}") from None
    return value
