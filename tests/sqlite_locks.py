"""Another SQLite connection that writes, or holds the write lock, beside the service's own."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import make_url


def sqlite_path(database_url: str) -> str:
    database = make_url(database_url).database
    assert database, database_url
    return database


def write_from_another_connection(path: str) -> str:
    """Commits a write from a connection of its own that does not wait for the write lock:
    "committed", or why it could not."""
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute(
            "INSERT INTO callbacklog (body, outcome, receivedAt) VALUES ('{}', 'malformed', ?)",
            (datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" "),),
        )
    except sqlite3.OperationalError as exc:
        return str(exc)
    finally:
        other.close()
    return "committed"


@contextmanager
def write_lock_held(path: str) -> Iterator[None]:
    """Another connection holds the database's write lock meanwhile (it waits for it first)."""
    other = sqlite3.connect(path, timeout=30, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()
