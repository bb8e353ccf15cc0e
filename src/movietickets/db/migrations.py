"""Run the Alembic migrations from code (the CLI and the tests use this).

The migrations live in the repository's top-level `alembic/`; an installed copy carries them
inside the package as `movietickets._migrations` (see setup.py). The Alembic configuration is
built here, so no `alembic.ini` is needed at run time and any working directory will do
(`alembic.ini` serves the `alembic` command that developers run in a checkout).
"""

from __future__ import annotations

import logging
from pathlib import Path

# Alembic announces each of its plugins at INFO as it is imported: not news for the operator.
logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402

from movietickets.settings import Settings  # noqa: E402

_PACKAGE = Path(__file__).resolve().parents[1]
# Installed (a wheel), then a source checkout or editable install (src/movietickets/..).
_LOCATIONS = (_PACKAGE / "_migrations", _PACKAGE.parents[1] / "alembic")


class MigrationsNotFound(RuntimeError):
    pass


def script_location() -> Path:
    for candidate in _LOCATIONS:
        if (candidate / "env.py").is_file():
            return candidate
    raise MigrationsNotFound(
        "the migrations are not installed with the package (looked in "
        + ", ".join(str(location) for location in _LOCATIONS)
        + "): reinstall movietickets"
    )


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.attributes["skip_logging"] = True  # keep the service's own logging setup
    config.set_main_option("script_location", str(script_location()))
    config.set_main_option("path_separator", "os")
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    command.upgrade(alembic_config(settings.database_url), revision)


def downgrade(settings: Settings, revision: str = "base") -> None:
    command.downgrade(alembic_config(settings.database_url), revision)
