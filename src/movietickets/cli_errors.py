"""Why a `movietickets` command failed, in one line (the traceback only at LOG_LEVEL=DEBUG)."""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback

from pydantic import ValidationError

logger = logging.getLogger("movietickets")

NOT_MIGRATED = "the database has no tables yet: run `movietickets migrate` first"
_MISSING_TABLE = re.compile(r"no such table|doesn't exist|\b1146\b", re.IGNORECASE)


def _line(text: str) -> str:
    return " ".join(text.split())


def settings_problem(exc: ValidationError) -> str:
    """`PORT: Input should be a valid integer; ...` (the values themselves may be secrets)."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        message = error["msg"].removeprefix("Value error, ")
        location = ".".join(str(part) for part in error["loc"]).upper()
        problems.append(f"{location}: {message}" if location else message)
    return "invalid settings: " + "; ".join(problems)


def _safe_url(database_url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except Exception:  # an unreadable URL is reported by the settings, not here
        return "(DATABASE_URL)"


def describe(exc: BaseException, database_url: str) -> str:
    """One line for the user; what else is known goes to the debug log."""
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    # Only `migrate` imports Alembic; importing it here would make the other commands log its
    # start-up.
    alembic_errors = sys.modules.get("alembic.util.exc")
    known: tuple[type[BaseException], ...] = (OSError, RuntimeError)
    if alembic_errors is not None:
        known += (alembic_errors.CommandError,)

    logger.debug("the command failed", exc_info=exc)
    if isinstance(exc, ValidationError) and exc.title == "Settings":
        return settings_problem(exc)
    if isinstance(exc, DBAPIError):
        detail = _line(str(exc.orig))
        if _MISSING_TABLE.search(detail):
            return NOT_MIGRATED
        return f"database {_safe_url(database_url)}: {detail}"
    if isinstance(exc, SQLAlchemyError):
        return f"database {_safe_url(database_url)}: {_line(str(exc).split(' (Background on')[0])}"
    if isinstance(exc, known):
        return _line(str(exc)) or type(exc).__name__
    return _line(f"unexpected error ({type(exc).__name__}): {exc}")


def quiet_aiosqlite_closed_loop() -> None:
    """After a failed SQLite connect, aiosqlite's worker thread may hand its clean-up result to
    the event loop `asyncio.run` has already closed (omnilib/aiosqlite#389): a harmless
    "Event loop is closed" that would be printed as a thread's traceback after the command's
    one line. Only that one is silenced (logged at DEBUG)."""
    default = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        frames = traceback.extract_tb(args.exc_traceback)
        if (
            args.exc_type is RuntimeError
            and str(args.exc_value) == "Event loop is closed"
            and any("aiosqlite" in frame.filename for frame in frames)
        ):
            logger.debug("aiosqlite: result for a closed event loop dropped")
            return
        default(args)

    threading.excepthook = hook
