"""The package as `pip install .` installs it: its command works from any directory.

Exactly what the Dockerfile's build stage copies is copied and installed with `pip install
--no-deps --target` (built offline by this environment's setuptools); the dependencies come
from this environment's site-packages. Every command runs in an empty directory, far from
the checkout and its alembic.ini.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement

from tests.live_server import free_port, running_server

ROOT = Path(__file__).resolve().parents[1]
CACHES = ("__pycache__", "*.egg-info")


def build_context() -> list[str]:
    """What the Dockerfile's build stage (its first FROM) copies: `COPY a b dest` lines."""
    copied: list[str] = []
    stage = 0
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stage += line.startswith("FROM ")
        if stage == 1 and line.startswith("COPY "):
            copied += line.split()[1:-1]
    assert copied
    return copied


def healthcheck() -> str:
    """The Dockerfile's HEALTHCHECK command (shell form), as the container's shell runs it."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("HEALTHCHECK "))
    return line.split(" CMD ", 1)[1].strip()


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
    source.mkdir()
    for name in build_context():
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns(*CACHES))
        else:
            shutil.copy2(ROOT / name, source / name)
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


def test_the_images_health_check_follows_port(served: str) -> None:
    """The image's health check, run as its shell would, against the installed command."""
    port = served.rsplit(":", 1)[1]

    def check(port: str) -> int:
        env = {"PATH": os.environ["PATH"], "PORT": port}
        command = ["/bin/sh", "-c", healthcheck()]
        return subprocess.run(command, env=env, check=False).returncode  # noqa: S603

    assert check(port) == 0
    assert check(str(free_port())) != 0  # nothing listens there


def test_the_wheel_carries_the_migrations_and_its_command(installed: Installed) -> None:
    package = Path(installed.pythonpath) / "movietickets"
    assert (package / "_migrations" / "env.py").is_file()
    assert (package / "_migrations" / "script.py.mako").is_file()
    assert list((package / "_migrations" / "versions").glob("*.py"))
    assert installed.command.is_file()
    # The license: an SPDX expression (PEP 639) and its file.
    dist_info = next(Path(installed.pythonpath).glob("movietickets-*.dist-info"))
    metadata = (dist_info / "METADATA").read_text().splitlines()
    assert "License-Expression: MIT" in metadata
    assert "License-File: LICENSE" in metadata
    assert "MIT License" in (dist_info / "licenses" / "LICENSE").read_text()
    # Only the package is installed: no top-level `alembic` package shadowing the library.
    assert not (Path(installed.pythonpath) / "alembic").exists()


def test_the_build_needs_a_setuptools_that_reads_the_license_expression() -> None:
    """`license = "MIT"`, an SPDX expression (PEP 639), is read by setuptools 77 and later."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == "MIT"
    (setuptools,) = [
        requirement
        for requirement in map(Requirement, pyproject["build-system"]["requires"])
        if requirement.name == "setuptools"
    ]
    assert not setuptools.specifier.contains("76.1.0")
    assert setuptools.specifier.contains("77.0.0")
