"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24 00:33:02.149948
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from movietickets.db.base import UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "admin",
        sa.Column("adminId", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("passwordHash", sa.String(length=255), nullable=False),
        sa.Column("dateCreated", UTCDateTime(), nullable=False),
        sa.Column("lastUpdated", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("adminId"),
        sa.UniqueConstraint("username", name=op.f("uq_admin_username")),
    )
    op.create_table(
        "callbacklog",
        sa.Column("callbackId", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("checkoutRequestId", sa.String(length=64), nullable=True),
        sa.Column("ticketId", sa.Integer(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("sourceIp", sa.String(length=45), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.String(length=255), nullable=True),
        sa.Column("receivedAt", UTCDateTime(), nullable=False),
        sa.Column("processedAt", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("callbackId"),
    )
    with op.batch_alter_table("callbacklog", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_callbacklog_checkoutRequestId"), ["checkoutRequestId"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_callbacklog_outcome"), ["outcome"], unique=False)

    op.create_table(
        "idempotencykey",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("requestHash", sa.String(length=64), nullable=False),
        sa.Column("responseStatus", sa.Integer(), nullable=True),
        sa.Column("responseBody", sa.Text(), nullable=True),
        sa.Column("createdAt", UTCDateTime(), nullable=False),
        sa.Column("expiresAt", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("idempotencykey", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotencykey_expiresAt"), ["expiresAt"], unique=False
        )

    op.create_table(
        "movie",
        sa.Column("movieId", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("showTime", UTCDateTime(), nullable=False),
        sa.Column("price", sa.Integer(), nullable=False),
        sa.Column("max_tickets", sa.Integer(), nullable=False),
        sa.Column("imageUrl", sa.String(length=2048), nullable=True),
        sa.Column("seatsPaid", sa.Integer(), nullable=False),
        sa.Column("dateCreated", UTCDateTime(), nullable=False),
        sa.Column("lastUpdated", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "max_tickets > 0 AND max_tickets <= 100000", name=op.f("ck_movie_max_tickets_positive")
        ),
        sa.CheckConstraint("price > 0 AND price <= 250000", name=op.f("ck_movie_price_positive")),
        sa.CheckConstraint("seatsPaid >= 0", name=op.f("ck_movie_seats_paid_not_negative")),
        sa.PrimaryKeyConstraint("movieId"),
    )
    with op.batch_alter_table("movie", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_movie_showTime"), ["showTime"], unique=False)

    op.create_table(
        "ticket",
        sa.Column("ticketId", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("movieId", sa.Integer(), nullable=False),
        sa.Column("customerName", sa.String(length=255), nullable=False),
        sa.Column("phoneNumber", sa.String(length=12), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("totalAmount", sa.Integer(), nullable=False),
        sa.Column("paymentStatus", sa.String(length=16), nullable=False),
        sa.Column("mpesaReceiptNumber", sa.String(length=32), nullable=True),
        sa.Column("transactionDate", UTCDateTime(), nullable=True),
        sa.Column("resultCode", sa.String(length=32), nullable=True),
        sa.Column("resultDesc", sa.String(length=255), nullable=True),
        sa.Column("holdExpiresAt", UTCDateTime(), nullable=False),
        sa.Column("needsRefund", sa.Boolean(), nullable=False),
        sa.Column("accessTokenHash", sa.String(length=64), nullable=True),
        sa.Column("dateCreated", UTCDateTime(), nullable=False),
        sa.Column("lastUpdated", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "paymentStatus IN ('Pending', 'Paid', 'Failed')",
            name=op.f("ck_ticket_payment_status_valid"),
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_ticket_quantity_positive")),
        sa.CheckConstraint("totalAmount > 0", name=op.f("ck_ticket_total_amount_positive")),
        sa.ForeignKeyConstraint(
            ["movieId"],
            ["movie.movieId"],
            name=op.f("fk_ticket_movieId_movie"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("ticketId"),
    )
    with op.batch_alter_table("ticket", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ticket_movieId_paymentStatus_holdExpiresAt"),
            ["movieId", "paymentStatus", "holdExpiresAt"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_ticket_phoneNumber"), ["phoneNumber"], unique=False)

    op.create_table(
        "pushrequest",
        sa.Column("pushRequestId", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("ticketId", sa.Integer(), nullable=False),
        sa.Column("checkoutRequestId", sa.String(length=64), nullable=False),
        sa.Column("merchantRequestId", sa.String(length=64), nullable=True),
        sa.Column("nextQueryAt", UTCDateTime(), nullable=True),
        sa.Column("queryAttempts", sa.Integer(), nullable=False),
        sa.Column("dateCreated", UTCDateTime(), nullable=False),
        sa.Column("lastUpdated", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ticketId"],
            ["ticket.ticketId"],
            name=op.f("fk_pushrequest_ticketId_ticket"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("pushRequestId"),
        sa.UniqueConstraint("checkoutRequestId", name=op.f("uq_pushrequest_checkoutRequestId")),
        sa.UniqueConstraint("ticketId", name=op.f("uq_pushrequest_ticketId")),
    )
    with op.batch_alter_table("pushrequest", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pushrequest_nextQueryAt"), ["nextQueryAt"], unique=False
        )


def downgrade() -> None:
    # Dropping a table drops its indexes; dropping an index first fails on MySQL when a
    # foreign key needs it.
    for table in ("admin", "idempotencykey", "pushrequest", "ticket", "movie", "callbacklog"):
        op.drop_table(table)
