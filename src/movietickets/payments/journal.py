"""What the payments keep on local disk while the database cannot take it (`kit.journal`).

Two kinds of entries, both things Daraja will not send again:

    callback  a callback delivery as received (its delivery id, body, source address,
              arrival time, and what the checks made of it), kept when storing or applying it
              failed; replayed into the callback log (once: the delivery id is unique) and
              applied as on arrival, so that Daraja can be answered 200 at once.
    push      an STK push Daraja accepted (ticket, CheckoutRequestID, MerchantRequestID),
              kept when recording it failed; replayed as `PushRecords` would have recorded
              it (any callback that arrived first is applied then).

The replay itself is `payments.recovery`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from movietickets.db.models import CallbackOutcome
from movietickets.kit.journal import Journal
from movietickets.payments.repository import NewPush

CALLBACK = "callback"
PUSH = "push"


@dataclass(frozen=True, slots=True)
class CallbackDelivery:
    """One callback as it arrived, before anything was stored."""

    delivery_id: str
    body: str
    source_ip: str | None
    checkout_request_id: str | None
    outcome: CallbackOutcome  # RECEIVED, REFUSED or MALFORMED
    detail: str | None
    received_at: datetime

    def entry(self) -> dict[str, Any]:
        return {
            "kind": CALLBACK,
            "deliveryId": self.delivery_id,
            "body": self.body,
            "sourceIp": self.source_ip,
            "checkoutRequestId": self.checkout_request_id,
            "outcome": self.outcome.value,
            "detail": self.detail,
            "receivedAt": self.received_at.isoformat(),
        }

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> CallbackDelivery:
        return cls(
            delivery_id=entry["deliveryId"],
            body=entry["body"],
            source_ip=entry["sourceIp"],
            checkout_request_id=entry["checkoutRequestId"],
            outcome=CallbackOutcome(entry["outcome"]),
            detail=entry["detail"],
            received_at=datetime.fromisoformat(entry["receivedAt"]),
        )


def push_entry(push: NewPush) -> dict[str, Any]:
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
