"""Run the Alembic migrations from code (the CLI and the tests use this)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from movietickets.settings import Settings

# A source checkout keeps `alembic/` beside `src/`; an installed copy is run from the
# directory holding `alembic.ini` (the Docker image's working directory).
_SOURCE_ROOT = Path(__file__).resolve().parents[3]


def _project_root() -> Path:
    for candidate in (Path.cwd(), _SOURCE_ROOT):
        if (candidate / "alembic.ini").is_file() and (candidate / "alembic").is_dir():
            return candidate
    raise RuntimeError("alembic.ini not found: run from the project directory")


def alembic_config(database_url: str) -> Config:
    root = _project_root()
    config = Config(str(root / "alembic.ini"))
    config.attributes["skip_logging"] = True  # keep the service's own logging setup
    config.set_main_option("script_location", str(root / "alembic"))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings.database_url), revision)


def downgrade(settings: Settings, revision: str = "base") -> None:
    command.downgrade(alembic_config(settings.database_url), revision)
