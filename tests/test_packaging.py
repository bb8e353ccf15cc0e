"""The package as `pip install .` installs it: its command works from any directory.

The sources are copied and installed with `pip install --no-deps --target` (built offline by
this environment's setuptools); the dependencies come from this environment's site-packages.
Every command runs in an empty directory, far from the checkout and its alembic.ini.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.live_server import free_port, running_server

ROOT = Path(__file__).resolve().parents[1]
NOT_SHIPPED = (".git", ".venv", "tests", "bench", "build", "dist", "*.egg-info", "*.db*", ".env")
CACHES = ("__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache")


@dataclass(frozen=True)
class Installed:
    command: Path
    pythonpath: str

    def env(self, workdir: Path, **settings: str) -> dict[str, str]:
        return {
            "PATH": os.environ["PATH"],
            "PYTHONPATH": self.pythonpath,
            "DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'movietickets.db'}",
            "LOG_LEVEL": "WARNING",
            **settings,
        }

    def run(self, workdir: Path, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603  (the installed command)
            [str(self.command), *args],
            cwd=workdir,
            env=self.env(workdir, **settings),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("package")
    source, target = tmp / "source", tmp / "target"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SHIPPED, *CACHES))
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run(  # noqa: S603
        [*pip, "--no-index", "--target", str(target), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    shutil.rmtree(source)  # nothing may be read from the sources any more
    installed = Installed(target / "bin" / "movietickets", str(target))
    # The installed copy is the one imported, not the checkout (an editable install).
    where = subprocess.run(
        [sys.executable, "-c", "import movietickets; print(movietickets.__file__)"],
        cwd=tmp,
        env=installed.env(tmp),
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(target)
    return installed


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty directory: no alembic.ini, no alembic/, no .env."""
    assert not any(tmp_path.iterdir())
    return tmp_path


def test_migrate_and_seed_from_any_directory(installed: Installed, workdir: Path) -> None:
    migrated = installed.run(workdir, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    seeded = installed.run(workdir, "seed")
    assert seeded.returncode == 0, seeded.stderr
    assert re.fullmatch(r"added [1-9]\d* sample movies", seeded.stdout.strip()), seeded.stdout
    # And back down: every migration is installed, not only the first.
    reverted = installed.run(workdir, "migrate", "downgrade", "base")
    assert reverted.returncode == 0, reverted.stderr


@pytest.fixture
def served(installed: Installed, workdir: Path) -> Iterator[str]:
    port = free_port()
    with running_server(
        [str(installed.command), "serve"],
        port=port,
        env=installed.env(workdir, PORT=str(port), ENVIRONMENT="development"),
        cwd=workdir,
    ) as server:
        yield server.url


def test_serve_migrates_and_serves_from_any_directory(served: str) -> None:
    movies = httpx.get(f"{served}/api/movies", timeout=10)
    assert movies.status_code == 200
    assert len(movies.json()["movies"]) > 0  # development: migrated, then seeded
    assert httpx.get(f"{served}/readyz", timeout=10).json() == {"status": "ready"}


def test_the_wheel_carries_the_migrations_and_its_command(installed: Installed) -> None:
    package = Path(installed.pythonpath) / "movietickets"
    assert (package / "_migrations" / "env.py").is_file()
    assert (package / "_migrations" / "script.py.mako").is_file()
    assert list((package / "_migrations" / "versions").glob("*.py"))
    assert installed.command.is_file()
    # Only the package is installed: no top-level `alembic` package shadowing the library.
    assert not (Path(installed.pythonpath) / "alembic").exists()
