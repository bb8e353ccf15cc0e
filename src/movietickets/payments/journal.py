"""What the payments keep on local disk while the database cannot take it (`kit.journal`).

Two kinds of entries, both things Daraja will not send again:

    callback  a callback delivery as it would have been stored in the callback log (its
              delivery id, the bytes kept with the size and SHA-256 of the whole body, source
              address, arrival time, and what the checks made of it); replayed into the
              callback log (once: the delivery id is unique) and applied as on arrival, so
              that Daraja can be answered at once.
    push      an STK push Daraja accepted (ticket, CheckoutRequestID, MerchantRequestID),
              kept when recording it failed or took too long; replayed as `PushRecords`
              would have recorded it (any callback that arrived first is applied then).

The replay itself is `payments.recovery`.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from movietickets.db.models import CallbackOutcome
from movietickets.kit.clock import utcnow
from movietickets.kit.journal import Entry, Journal
from movietickets.payments.repository import NewPush

CALLBACK = "callback"
PUSH = "push"


@dataclass(frozen=True, slots=True)
class CallbackDelivery:
    """One callback as it arrived, as the callback log keeps it."""

    delivery_id: str
    body: bytes  # what is kept: all of it, or the first bytes of a refused one
    body_size: int  # of the whole body received
    body_sha256: str  # of the whole body received
    source_ip: str | None
    checkout_request_id: str | None
    outcome: CallbackOutcome  # RECEIVED, REFUSED or MALFORMED
    detail: str | None
    received_at: datetime

    @classmethod
    def arrived(
        cls,
        raw: bytes,
        source_ip: str | None,
        outcome: CallbackOutcome,
        *,
        checkout_request_id: str | None = None,
        detail: str | None = None,
        keep: int | None = None,
    ) -> CallbackDelivery:
        """A delivery just received, with a new id; `keep`: store only its first bytes."""
        return cls(
            delivery_id=uuid.uuid4().hex,
            body=raw if keep is None else raw[:keep],
            body_size=len(raw),
            body_sha256=hashlib.sha256(raw).hexdigest(),
            source_ip=source_ip,
            checkout_request_id=checkout_request_id,
            outcome=outcome,
            detail=detail,
            received_at=utcnow(),
        )

    def entry(self) -> Entry:
        return {
            "kind": CALLBACK,
            "deliveryId": self.delivery_id,
            "body": base64.b64encode(self.body).decode(),
            "bodySize": self.body_size,
            "bodySha256": self.body_sha256,
            "sourceIp": self.source_ip,
            "checkoutRequestId": self.checkout_request_id,
            "outcome": self.outcome.value,
            "detail": self.detail,
            "receivedAt": self.received_at.isoformat(),
        }

    @classmethod
    def from_entry(cls, entry: Entry) -> CallbackDelivery:
        return cls(
            delivery_id=entry["deliveryId"],
            body=base64.b64decode(entry["body"]),
            body_size=int(entry["bodySize"]),
            body_sha256=entry["bodySha256"],
            source_ip=entry["sourceIp"],
            checkout_request_id=entry["checkoutRequestId"],
            outcome=CallbackOutcome(entry["outcome"]),
            detail=entry["detail"],
            received_at=datetime.fromisoformat(entry["receivedAt"]),
        )


def push_entry(push: NewPush) -> Entry:
    return {
        "kind": PUSH,
        "ticketId": push.ticket_id,
        "checkoutRequestId": push.checkout_request_id,
        "merchantRequestId": push.merchant_request_id,
        "nextQueryAt": push.next_query_at.isoformat(),
        "createdAt": push.created_at.isoformat(),
    }


def push_from_entry(entry: dict[str, Any]) -> NewPush:
    return NewPush(
        ticket_id=int(entry["ticketId"]),
        checkout_request_id=entry["checkoutRequestId"],
        merchant_request_id=entry["merchantRequestId"],
        next_query_at=datetime.fromisoformat(entry["nextQueryAt"]),
        created_at=datetime.fromisoformat(entry["createdAt"]),
    )


class PaymentJournal:
    """The process's journal of payments (one per process, created in the app's lifespan)."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    async def keep_callback(self, delivery: CallbackDelivery) -> None:
        """Durable when it returns; raises OSError if the journal cannot be written."""
        await self.journal.append(delivery.entry())

    async def keep_push(self, push: NewPush) -> None:
        """Durable when it returns; raises OSError if the journal cannot be written."""
        await self.journal.append(push_entry(push))

    def close(self) -> None:
        self.journal.close()
