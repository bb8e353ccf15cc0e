"""the client address of each ticket, and sign-in attempt counts

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 12:00:00.000000

Upgrade adds `ticket.clientAddress` (empty for existing tickets, which then count against no
client's bound) and the `signincount` table. Downgrade drops the column, and with it the
addresses stored (tickets are otherwise untouched), and the table: the sign-in attempts of
the current windows are forgotten.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from movietickets.db.base import MYSQL_CHARSET, MYSQL_COLLATION, UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("ticket", sa.Column("clientAddress", sa.String(length=45), nullable=True))
    op.create_table(
        "signincount",
        sa.Column("key", sa.String(length=96), nullable=False),
        sa.Column("windowStart", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "windowStart"),
        mysql_charset=MYSQL_CHARSET,
        mysql_collate=MYSQL_COLLATION,
    )
    op.create_index(op.f("ix_signincount_windowStart"), "signincount", ["windowStart"])


def downgrade() -> None:
    op.drop_table("signincount")
    op.drop_column("ticket", "clientAddress")
