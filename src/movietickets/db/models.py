"""Tables of the original API (movie, ticket, pushrequest) plus the callback audit log.

Column names keep the original schema's spelling so existing SQL and reports keep working.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column, relationship

from movietickets.db.base import (
    MYSQL_BINARY_COLLATION,
    MYSQL_CHARSET,
    TABLE_OPTIONS,
    Base,
    StrEnumColumn,
    UTCDateTime,
)
from movietickets.kit.clock import utcnow

PRICE_MAX = 250_000
MAX_TICKETS_LIMIT = 100_000
# Sizes of the columns a callback's text is written to (cut to fit, never refused).
RECEIPT_NUMBER_LENGTH = 32
RESULT_DESC_LENGTH = 255
MERCHANT_REQUEST_ID_LENGTH = 64
IDEMPOTENCY_KEY_LENGTH = 255
DELIVERY_ID_LENGTH = 32


class PaymentStatus(enum.StrEnum):
    PENDING = "Pending"
    PAID = "Paid"
    FAILED = "Failed"
    # The push may have reached the phone, but M-Pesa's answer to it (its CheckoutRequestID)
    # never arrived, so nothing can be queried: neither paid nor refused, as far as anyone
    # knows. Its seats are released; a success callback that still comes settles it as a late
    # payment (Paid, or needsRefund), a failure makes it Failed.
    UNCONFIRMED = "Unconfirmed"


class CallbackOutcome(enum.StrEnum):
    """What became of one received callback body (kept in the audit log)."""

    RECEIVED = "received"  # stored, not yet applied
    APPLIED = "applied"  # changed the ticket
    IGNORED = "ignored"  # ticket already final: duplicate or contradicting
    AMOUNT_MISMATCH = "amount_mismatch"  # success for a different amount: not marked Paid
    UNMATCHED = "unmatched"  # no ticket with that CheckoutRequestID (yet)
    MALFORMED = "malformed"  # not a Daraja callback body
    REFUSED = "refused"  # failed the authenticity checks
    # A success carrying the receipt of another ticket: a receipt settles one ticket at most.
    DUPLICATE_RECEIPT = "duplicate_receipt"


class Timestamps:
    date_created: Mapped[datetime] = mapped_column("dateCreated", UTCDateTime(), default=utcnow)
    last_updated: Mapped[datetime] = mapped_column(
        "lastUpdated", UTCDateTime(), default=utcnow, onupdate=utcnow
    )


class Movie(Timestamps, Base):
    __tablename__ = "movie"
    __table_args__ = (
        CheckConstraint(f"price > 0 AND price <= {PRICE_MAX}", name="price_positive"),
        CheckConstraint(
            f"max_tickets > 0 AND max_tickets <= {MAX_TICKETS_LIMIT}", name="max_tickets_positive"
        ),
        CheckConstraint("seatsPaid >= 0", name="seats_paid_not_negative"),
        TABLE_OPTIONS,
    )

    movie_id: Mapped[int] = mapped_column("movieId", Integer, primary_key=True, autoincrement=True)
    title: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    show_time: Mapped[datetime] = mapped_column("showTime", UTCDateTime(), index=True)
    price: Mapped[int] = mapped_column(Integer)
    max_tickets: Mapped[int] = mapped_column(Integer, default=100)
    image_url: Mapped[str | None] = mapped_column("imageUrl", String(2048))
    # Seats of Paid tickets, kept with every Paid transition (under the movie's row lock) so
    # availability never has to add up the ticket table.
    seats_paid: Mapped[int] = mapped_column("seatsPaid", Integer, default=0)


class Ticket(Timestamps, Base):
    __tablename__ = "ticket"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("totalAmount > 0", name="total_amount_positive"),
        CheckConstraint(
            "paymentStatus IN ('Pending', 'Paid', 'Failed', 'Unconfirmed')",
            name="payment_status_valid",
        ),
        # Seats held: Pending tickets of a movie whose hold has not expired (a range scan).
        Index(None, "movieId", "paymentStatus", "holdExpiresAt"),
        TABLE_OPTIONS,
    )

    ticket_id: Mapped[int] = mapped_column(
        "ticketId", Integer, primary_key=True, autoincrement=True
    )
    movie_id: Mapped[int] = mapped_column(
        "movieId", ForeignKey("movie.movieId", ondelete="RESTRICT")
    )
    customer_name: Mapped[str] = mapped_column("customerName", String(255))
    phone_number: Mapped[str] = mapped_column("phoneNumber", String(12), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    total_amount: Mapped[int] = mapped_column("totalAmount", Integer)
    payment_status: Mapped[PaymentStatus] = mapped_column(
        "paymentStatus", StrEnumColumn(PaymentStatus, 16), default=PaymentStatus.PENDING
    )
    # A receipt settles one ticket at most (NULL, no receipt yet, on any number of them).
    mpesa_receipt_number: Mapped[str | None] = mapped_column(
        "mpesaReceiptNumber",
        String(RECEIPT_NUMBER_LENGTH).with_variant(
            mysql.VARCHAR(
                RECEIPT_NUMBER_LENGTH, charset=MYSQL_CHARSET, collation=MYSQL_BINARY_COLLATION
            ),
            "mysql",
            "mariadb",
        ),
        unique=True,
    )
    transaction_date: Mapped[datetime | None] = mapped_column("transactionDate", UTCDateTime())
    result_code: Mapped[str | None] = mapped_column("resultCode", String(32))
    result_desc: Mapped[str | None] = mapped_column("resultDesc", String(RESULT_DESC_LENGTH))
    hold_expires_at: Mapped[datetime] = mapped_column("holdExpiresAt", UTCDateTime())
    # Paid after its seats were released and resold: the customer must be refunded.
    needs_refund: Mapped[bool] = mapped_column("needsRefund", Boolean, default=False)
    # SHA-256 of the secret handed to the buyer; it unlocks the name and phone number.
    access_token_hash: Mapped[str | None] = mapped_column("accessTokenHash", String(64))
    # Who asked for it (`kit.net.client_key`: the IPv4 address or the IPv6 /64): what one client
    # may hold at once is bounded per showing (MAX_HELD_SEATS_PER_ADDRESS).
    client_address: Mapped[str | None] = mapped_column("clientAddress", String(45))
    # The Idempotency-Key of the request that created it, written by the same INSERT: a retry
    # after a crash finds this ticket, and no key can ever have two tickets. Cleared when the
    # key expires (or the ticket is released before its push), so that the key may run again.
    idempotency_key: Mapped[str | None] = mapped_column(
        "idempotencyKey", String(IDEMPOTENCY_KEY_LENGTH), unique=True
    )

    movie: Mapped[Movie] = relationship(lazy="raise")


class PushRequest(Timestamps, Base):
    __tablename__ = "pushrequest"
    __table_args__ = (TABLE_OPTIONS,)

    push_request_id: Mapped[int] = mapped_column(
        "pushRequestId", Integer, primary_key=True, autoincrement=True
    )
    ticket_id: Mapped[int] = mapped_column(
        "ticketId", ForeignKey("ticket.ticketId", ondelete="CASCADE"), unique=True
    )
    checkout_request_id: Mapped[str] = mapped_column("checkoutRequestId", String(64), unique=True)
    merchant_request_id: Mapped[str | None] = mapped_column(
        "merchantRequestId", String(MERCHANT_REQUEST_ID_LENGTH)
    )
    # When the reconciler should next ask Daraja about a push that got no callback.
    next_query_at: Mapped[datetime | None] = mapped_column("nextQueryAt", UTCDateTime(), index=True)
    query_attempts: Mapped[int] = mapped_column("queryAttempts", Integer, default=0)


class CallbackLog(Base):
    """Every callback body exactly as received (bytes), stored before it is applied.

    A refused callback keeps only its first bytes; `bodySize` and `bodySha256` are always
    those of the whole body received (NULL on rows stored before they existed).
    """

    __tablename__ = "callbacklog"
    __table_args__ = (TABLE_OPTIONS,)

    callback_id: Mapped[int] = mapped_column(
        "callbackId", Integer, primary_key=True, autoincrement=True
    )
    # Given to each delivery on arrival: a callback kept in the journal while the database was
    # away, then replayed (perhaps twice), is stored once.
    delivery_id: Mapped[str | None] = mapped_column(
        "deliveryId", String(DELIVERY_ID_LENGTH), unique=True
    )
    checkout_request_id: Mapped[str | None] = mapped_column(
        "checkoutRequestId", String(64), index=True
    )
    ticket_id: Mapped[int | None] = mapped_column("ticketId", Integer)
    # A MEDIUMBLOB on MySQL/MariaDB (16 MiB; a TEXT holds 64 KB of bytes, less than a body of
    # MAX_BODY_BYTES once invalid UTF-8 is replaced): far above MAX_BODY_BYTES' ceiling.
    body: Mapped[bytes] = mapped_column(
        LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql", "mariadb")
    )
    body_size: Mapped[int | None] = mapped_column("bodySize", Integer)
    body_sha256: Mapped[str | None] = mapped_column("bodySha256", String(64))
    source_ip: Mapped[str | None] = mapped_column("sourceIp", String(45))
    outcome: Mapped[CallbackOutcome] = mapped_column(
        StrEnumColumn(CallbackOutcome, 32), default=CallbackOutcome.RECEIVED, index=True
    )
    detail: Mapped[str | None] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column("receivedAt", UTCDateTime(), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column("processedAt", UTCDateTime())


class IdempotencyKey(Base):
    """The first answer to a make-payment request sent with an `Idempotency-Key` header."""

    __tablename__ = "idempotencykey"
    __table_args__ = (TABLE_OPTIONS,)

    key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_LENGTH), primary_key=True)
    request_hash: Mapped[str] = mapped_column("requestHash", String(64))
    # Null while the first request is still being processed.
    response_status: Mapped[int | None] = mapped_column("responseStatus", Integer)
    response_body: Mapped[str | None] = mapped_column("responseBody", Text)
    # The ticket access token of the current attempt, so that an answer rebuilt from the
    # ticket after a crash can hand it out (as the stored answer would have); it also tells
    # attempts apart (one that takes over a key whose first attempt died gets a new one).
    access_token: Mapped[str | None] = mapped_column("accessToken", String(64))
    created_at: Mapped[datetime] = mapped_column("createdAt", UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column("expiresAt", UTCDateTime(), index=True)


class Admin(Timestamps, Base):
    """An operator who may manage movies and read reports."""

    __tablename__ = "admin"
    __table_args__ = (TABLE_OPTIONS,)

    admin_id: Mapped[int] = mapped_column("adminId", Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column("passwordHash", String(255))


class ServiceSecret(Base):
    """A secret the service made up for itself, kept per database (the development signing
    key when JWT_SECRET_KEY is not set), so that every worker and restart agrees on it."""

    __tablename__ = "servicesecret"
    __table_args__ = (TABLE_OPTIONS,)

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column("createdAt", UTCDateTime(), default=utcnow)


class SignInCount(Base):
    """Sign-in attempts of one username or one client address in one window of its limit.

    Kept in the database so that every worker and instance counts the same attempts
    (`auth.service.SignInLimits`); windows that have passed are deleted.
    """

    __tablename__ = "signincount"
    __table_args__ = (TABLE_OPTIONS,)

    # `user:<sha256 of the username>` or `address:<client key>`.
    key: Mapped[str] = mapped_column(String(96), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(
        "windowStart", UTCDateTime(), primary_key=True, index=True
    )
    attempts: Mapped[int] = mapped_column(Integer)
