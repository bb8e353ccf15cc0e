"""utf8mb4 everywhere on MySQL/MariaDB; callback bodies stored as bytes; unique receipts

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 00:00:00.000000

- MySQL/MariaDB only (SQLite always stores UTF-8): the database's default character set and
  every table of 0001 are converted to utf8mb4 (collation utf8mb4_unicode_ci), so that a name
  like `Wanjirũ 😀` can be stored on a database created as latin1 or utf8mb3; text already
  stored is re-encoded, not lost.
- `callbacklog.body` holds the bytes received (a MEDIUMBLOB on MySQL/MariaDB, where a TEXT
  holds 64 KB of bytes: less than a body of MAX_BODY_BYTES with multi-byte characters or
  invalid UTF-8), with `bodySize` and `bodySha256` of the whole body. Bodies already stored
  become the UTF-8 bytes of their text; their size and hash stay NULL (what was received
  before this migration was stored decoded, so its exact bytes are unknown).
- `ticket.mpesaReceiptNumber` is unique (NULL on any number of tickets), compared byte for
  byte (collation utf8mb4_bin on MySQL/MariaDB, as SQLite compares). If two tickets already
  carry the same receipt, the upgrade stops before changing anything and names them: a
  receipt paid one ticket, and which one is for an operator to decide.

Downgrade: the character set stays utf8mb4 (converting back to latin1 would lose every
character latin1 cannot hold). Bodies go back to text: bytes that are not UTF-8 become U+FFFD
and a body longer than a TEXT (65,535 bytes) is cut to fit; `bodySize` and `bodySha256` are
dropped. Receipt numbers stay as they are, no longer unique.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

from movietickets.db.base import MYSQL_BINARY_COLLATION, MYSQL_CHARSET, MYSQL_COLLATION

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES_OF_0001 = ("admin", "callbacklog", "idempotencykey", "movie", "ticket", "pushrequest")
BODY = sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")
TEXT_BYTES = 65_535


def _is_mysql() -> bool:
    return op.get_bind().dialect.name in ("mysql", "mariadb")


def _refuse_duplicate_receipts() -> None:
    """Stops the upgrade, before any change, if a receipt number is on two tickets."""
    tickets: dict[str, list[int]] = {}
    rows = op.get_bind().execute(
        sa.text(
            "SELECT ticketId, mpesaReceiptNumber FROM ticket"
            " WHERE mpesaReceiptNumber IS NOT NULL ORDER BY ticketId"
        )
    )
    for ticket_id, receipt in rows:
        # MySQL's collations ignore trailing spaces, so its unique index would too.
        tickets.setdefault(receipt.rstrip(" "), []).append(ticket_id)
    duplicates = {receipt: ids for receipt, ids in tickets.items() if len(ids) > 1}
    if duplicates:
        listed = "; ".join(
            f"receipt {receipt} on tickets {', '.join(map(str, ids))}"
            for receipt, ids in sorted(duplicates.items())[:10]
        )
        raise RuntimeError(
            f"migration 0002 makes receipt numbers unique, but {len(duplicates)} are on more"
            f" than one ticket ({listed}). A receipt paid one ticket: find which, set"
            " mpesaReceiptNumber to NULL on the others (and needsRefund if their customer is"
            " owed money), then migrate again. Nothing was changed."
        )


def upgrade() -> None:
    _refuse_duplicate_receipts()
    if _is_mysql():
        charset = f"CHARACTER SET {MYSQL_CHARSET} COLLATE {MYSQL_COLLATION}"
        # The default of tables created later without options; then every existing table.
        op.execute(f"ALTER DATABASE {charset}")
        for table in TABLES_OF_0001:
            op.execute(f"ALTER TABLE `{table}` CONVERT TO {charset}")

    # After the conversion, so that MySQL turns each body's utf8mb4 text into its UTF-8 bytes;
    # SQLite's batch copy casts the text to a BLOB, which is the same bytes.
    with op.batch_alter_table("callbacklog") as batch_op:
        batch_op.alter_column("body", existing_type=sa.Text(), type_=BODY, existing_nullable=False)
        batch_op.add_column(sa.Column("bodySize", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("bodySha256", sa.String(length=64), nullable=True))

    if _is_mysql():
        op.execute(
            "ALTER TABLE ticket MODIFY mpesaReceiptNumber VARCHAR(32)"
            f" CHARACTER SET {MYSQL_CHARSET} COLLATE {MYSQL_BINARY_COLLATION} NULL"
        )
    with op.batch_alter_table("ticket") as batch_op:
        batch_op.create_unique_constraint(
            batch_op.f("uq_ticket_mpesaReceiptNumber"), ["mpesaReceiptNumber"]
        )


def _as_text(body: bytes) -> bytes:
    """UTF-8 that fits a TEXT column: invalid bytes replaced, cut at a character boundary."""
    text = body.decode("utf-8", errors="replace").encode()
    return text[:TEXT_BYTES].decode("utf-8", errors="ignore").encode()


def _bodies_to_text() -> None:
    connection = op.get_bind()
    sqlite = connection.dialect.name == "sqlite"
    update = sa.text("UPDATE callbacklog SET body = :body WHERE callbackId = :id")
    last = 0
    while True:
        rows = connection.execute(
            sa.text(
                "SELECT callbackId, body FROM callbacklog WHERE callbackId > :last"
                " ORDER BY callbackId LIMIT 500"
            ),
            {"last": last},
        ).all()
        if not rows:
            return
        for callback_id, body in rows:
            raw = bytes(body)
            text = _as_text(raw)
            # SQLite keeps what it is given: every body must become a text value there.
            if sqlite or text != raw:
                value: str | bytes = text.decode() if sqlite else text
                connection.execute(update, {"body": value, "id": callback_id})
        last = rows[-1][0]


def downgrade() -> None:
    with op.batch_alter_table("ticket") as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_ticket_mpesaReceiptNumber"), type_="unique")
    if _is_mysql():
        op.execute(
            "ALTER TABLE ticket MODIFY mpesaReceiptNumber VARCHAR(32)"
            f" CHARACTER SET {MYSQL_CHARSET} COLLATE {MYSQL_COLLATION} NULL"
        )
    _bodies_to_text()
    with op.batch_alter_table("callbacklog") as batch_op:
        batch_op.drop_column("bodySha256")
        batch_op.drop_column("bodySize")
        batch_op.alter_column("body", existing_type=BODY, type_=sa.Text(), existing_nullable=False)
