"""service secrets: the signing key a development database makes up for itself

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 21:00:00

Downgrade drops the table: a development database then makes a new key on its next start
(admin tokens signed with the old one stop working).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from movietickets.db.base import MYSQL_CHARSET, MYSQL_COLLATION, UTCDateTime

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "servicesecret",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.Column("createdAt", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
        mysql_charset=MYSQL_CHARSET,
        mysql_collate=MYSQL_COLLATION,
    )


def downgrade() -> None:
    op.drop_table("servicesecret")
