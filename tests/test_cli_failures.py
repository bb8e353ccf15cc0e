"""A failing `movietickets` command says why in one line and exits non-zero, never a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# Log lines (configure_logging's format) may come before the failure, e.g. Alembic's.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ ")


def run_command(workdir: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], **settings}  # nothing else: no .env, no DATABASE_URL
    return subprocess.run(  # noqa: S603  (the service's own command)
        [sys.executable, "-m", "movietickets.cli", *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def failure_line(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == 1, output
    lines = [line for line in result.stderr.splitlines() if not LOG_LINE.match(line)]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize(
    ("args", "settings", "expected"),
    [
        pytest.param(
            ["migrate"],
            {"DATABASE_URL": "mysql+asyncmy://root:hunter2@127.0.0.1:1/nowhere"},
            "movietickets migrate: database mysql+asyncmy://root:***@127.0.0.1:1/nowhere: "
            "(2003, \"Can't connect to MySQL server",
            id="unreachable database",
        ),
        pytest.param(
            ["seed"],
            {"DATABASE_URL": "postgresql+asyncpg://localhost/db"},
            "movietickets seed: invalid settings: DATABASE_URL: the postgresql+asyncpg driver is "
            "not installed",
            id="driver not installed",
        ),
        pytest.param(
            ["migrate"],
            {"DATABASE_URL": "not a url"},
            "movietickets migrate: invalid settings: DATABASE_URL: not a database URL",
            id="bad DATABASE_URL",
        ),
        pytest.param(
            ["serve"],
            {"DATABASE_URL": "sqlite:///./movietickets.db"},
            "movietickets serve: invalid settings: DATABASE_URL: needs an async driver",
            id="sync driver",
        ),
        pytest.param(
            ["seed"],
            {"PORT": "eighty"},
            "movietickets seed: invalid settings: PORT: Input should be a valid integer",
            id="bad setting value",
        ),
        pytest.param(
            ["serve", "--port", "70000"],
            {},
            "movietickets serve: invalid settings: PORT: Input should be less than or equal to",
            id="bad --port",
        ),
        pytest.param(
            ["serve"],
            {"ENVIRONMENT": "production"},
            "movietickets serve: refusing to start (production): JWT_SECRET_KEY must be set",
            id="production without secrets",
        ),
        pytest.param(
            ["seed"],
            {"DATABASE_URL": "sqlite+aiosqlite:///./fresh.db"},
            "movietickets seed: the database has no tables yet: run `movietickets migrate` first",
            id="not migrated",
        ),
        pytest.param(
            ["migrate", "upgrade", "f00d"],
            {"DATABASE_URL": "sqlite+aiosqlite:///./fresh.db"},
            "movietickets migrate: Can't locate revision identified by 'f00d'",
            id="unknown revision",
        ),
        pytest.param(
            ["migrate"],
            {"DATABASE_URL": "sqlite+aiosqlite:///./no/such/directory/movietickets.db"},
            "movietickets migrate: database sqlite+aiosqlite:///./no/such/directory/movietickets.db:"
            " unable to open database file",
            id="unusable SQLite path",
        ),
    ],
)
def test_failure_is_one_line(
    tmp_path: Path, args: list[str], settings: dict[str, str], expected: str
) -> None:
    line = failure_line(run_command(tmp_path, *args, **settings))
    assert line.startswith(expected), line
    assert "hunter2" not in line
