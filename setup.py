"""The package layout for setuptools; everything else is in pyproject.toml.

The migrations stay in the repository's top-level `alembic/` (beside `alembic.ini`, where the
`alembic` command expects them) and are installed inside the package as
`movietickets._migrations`, so an installed `movietickets migrate` or `serve` works from any
directory. pyproject.toml cannot list packages found under `src/` and also map one from
elsewhere, hence this file.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages("src"),
        "movietickets._migrations",
        "movietickets._migrations.versions",
    ],
    package_dir={"": "src", "movietickets._migrations": "alembic"},
    package_data={"movietickets": ["py.typed"], "movietickets._migrations": ["script.py.mako"]},
)
