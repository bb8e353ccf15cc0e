"""the client address of each ticket

Revision ID: 0004
Revises: 0001
Create Date: 2026-12-01 12:00:00.000000

Upgrade adds `ticket.clientAddress` (empty for existing tickets, which then count against no
client's bound). Downgrade drops the column and with it the addresses stored; tickets are
otherwise untouched.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("ticket", sa.Column("clientAddress", sa.String(length=45), nullable=True))


def downgrade() -> None:
    op.drop_column("ticket", "clientAddress")
