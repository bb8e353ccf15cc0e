"""payment outcomes that survive crashes and outages

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 00:00:00.000000

Adds:
- `ticket.idempotencyKey` (unique): the Idempotency-Key of the request that created the ticket,
  so that a retry after a crash resolves the first attempt instead of starting a second one;
- `idempotencykey.accessToken`: the current attempt's ticket access token (an answer rebuilt
  from the ticket needs it);
- `callbacklog.deliveryId` (unique): the id each callback delivery gets on arrival, so that a
  delivery replayed from the journal is stored once;
- the `Unconfirmed` payment status (a push that may have reached the phone, whose answer
  never came), admitted by the ticket's status CHECK constraint.

Downgrade turns every `Unconfirmed` ticket into `Failed` (its seats are already released:
what the previous version did with such tickets; a success callback that still arrives is then
applied as a late payment, as before), then drops the three columns: keys no longer point at
tickets, and deliveries no longer have ids.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUS_CHECK = "ck_ticket_payment_status_valid"
OLD_STATUSES = "paymentStatus IN ('Pending', 'Paid', 'Failed')"
NEW_STATUSES = "paymentStatus IN ('Pending', 'Paid', 'Failed', 'Unconfirmed')"


def upgrade() -> None:
    # On SQLite the batch rebuilds the table (constraints, indexes and rows copied); on
    # MySQL/MariaDB each is one ALTER TABLE.
    with op.batch_alter_table("ticket") as batch_op:
        batch_op.add_column(sa.Column("idempotencyKey", sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_ticket_idempotencyKey"), ["idempotencyKey"]
        )
        batch_op.drop_constraint(batch_op.f(STATUS_CHECK), type_="check")
        batch_op.create_check_constraint(batch_op.f(STATUS_CHECK), sa.text(NEW_STATUSES))
    with op.batch_alter_table("idempotencykey") as batch_op:
        batch_op.add_column(sa.Column("accessToken", sa.String(length=64), nullable=True))
    with op.batch_alter_table("callbacklog") as batch_op:
        batch_op.add_column(sa.Column("deliveryId", sa.String(length=32), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_callbacklog_deliveryId"), ["deliveryId"])


def downgrade() -> None:
    op.execute("UPDATE ticket SET paymentStatus = 'Failed' WHERE paymentStatus = 'Unconfirmed'")
    with op.batch_alter_table("callbacklog") as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_callbacklog_deliveryId"), type_="unique")
        batch_op.drop_column("deliveryId")
    with op.batch_alter_table("idempotencykey") as batch_op:
        batch_op.drop_column("accessToken")
    with op.batch_alter_table("ticket") as batch_op:
        batch_op.drop_constraint(batch_op.f(STATUS_CHECK), type_="check")
        batch_op.create_check_constraint(batch_op.f(STATUS_CHECK), sa.text(OLD_STATUSES))
        batch_op.drop_constraint(batch_op.f("uq_ticket_idempotencyKey"), type_="unique")
        batch_op.drop_column("idempotencyKey")
