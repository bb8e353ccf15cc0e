"""Watching, or breaking, the SQL an engine sends (tests of batching and of failures)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine


@contextmanager
def _before_execute(engine: AsyncEngine, hook: Callable[..., None]) -> Iterator[None]:
    event.listen(engine.sync_engine, "before_cursor_execute", hook)
    try:
        yield
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", hook)


@contextmanager
def statements_sent(engine: AsyncEngine, wanted: Callable[[str], bool]) -> Iterator[list[str]]:
    """The statements `wanted` accepts, in the order they are sent."""
    sent: list[str] = []

    def record(*args: Any) -> None:
        if wanted(args[2]):
            sent.append(args[2])

    with _before_execute(engine, record):
        yield sent


@contextmanager
def statements_fail(
    engine: AsyncEngine, failing: Callable[[str, Any], bool], message: str
) -> Iterator[None]:
    """Statements `failing(statement, parameters)` accepts raise RuntimeError(message)."""

    def fail(*args: Any) -> None:
        if failing(args[2], args[3]):
            raise RuntimeError(message)

    with _before_execute(engine, fail):
        yield


@contextmanager
def before_statement(
    engine: AsyncEngine, wanted: Callable[[str], bool], action: Callable[[], None]
) -> Iterator[list[str]]:
    """Runs `action` just before each statement `wanted` accepts is sent; yields them."""
    sent: list[str] = []

    def run(*args: Any) -> None:
        if wanted(args[2]):
            sent.append(args[2])
            action()

    with _before_execute(engine, run):
        yield sent


@contextmanager
def database_unreachable(
    engine: AsyncEngine, only: Callable[[str], bool] | None = None
) -> Iterator[None]:
    """Every statement (or those `only` accepts) fails as it does when the database server
    cannot be reached."""

    def fail(*args: Any) -> None:
        if only is None or only(args[2]):
            refused = ConnectionRefusedError(111, "Connection refused")
            raise OperationalError(args[2], None, refused)

    with _before_execute(engine, fail):
        yield
