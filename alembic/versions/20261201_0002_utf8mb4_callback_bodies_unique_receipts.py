"""utf8mb4 everywhere on MySQL/MariaDB

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 00:00:00.000000

MySQL/MariaDB only (SQLite always stores UTF-8): the database's default character set and
every table of 0001 are converted to utf8mb4 (collation utf8mb4_unicode_ci), so that a name
like `Wanjirũ 😀` can be stored on a database created as latin1 or utf8mb3; text already
stored is re-encoded, not lost.

Downgrade leaves the character set as it is: converting back to latin1 would lose every
character latin1 cannot hold.
"""

from collections.abc import Sequence

from alembic import op

from movietickets.db.base import MYSQL_CHARSET, MYSQL_COLLATION

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES_OF_0001 = ("admin", "callbacklog", "idempotencykey", "movie", "ticket", "pushrequest")


def _is_mysql() -> bool:
    return op.get_bind().dialect.name in ("mysql", "mariadb")


def upgrade() -> None:
    if _is_mysql():
        charset = f"CHARACTER SET {MYSQL_CHARSET} COLLATE {MYSQL_COLLATION}"
        # The default of tables created later without options; then every existing table.
        op.execute(f"ALTER DATABASE {charset}")
        for table in TABLES_OF_0001:
            op.execute(f"ALTER TABLE `{table}` CONVERT TO {charset}")


def downgrade() -> None:
    pass
