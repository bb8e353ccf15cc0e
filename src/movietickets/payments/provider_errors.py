"""Daraja's errors as our HTTP errors, written once for the push and the status query.

    DarajaTimeout   no answer: the outcome is unknown         504 payment_outcome_unknown
    DarajaBusy      spike arrest / overload                    503 payment_provider_busy
    any other       refused or unreadable                      502 payment_provider_error

Every one names the ticket concerned (`ticketId`).
"""

from __future__ import annotations

import enum

from movietickets.daraja.errors import DarajaBusy, DarajaError, DarajaTimeout
from movietickets.errors import PaymentOutcomeUnknown, PaymentProviderBusy, PaymentProviderError


class DarajaCall(enum.Enum):
    PUSH = "push"
    QUERY = "query"


# (no answer, busy, refused), with the ticket's id to fill in.
_MESSAGES = {
    DarajaCall.PUSH: (
        "M-Pesa did not answer in time; ticket {ticket_id} stays Pending until the payment is "
        "confirmed or refused",
        "M-Pesa is busy; ticket {ticket_id} was cancelled, try again shortly",
        "M-Pesa refused the payment request; ticket {ticket_id} was cancelled",
    ),
    DarajaCall.QUERY: (
        "M-Pesa did not answer the status query in time",
        "M-Pesa is busy; query again shortly",
        "M-Pesa could not answer the status query",
    ),
}


def provider_error(call: DarajaCall, exc: DarajaError, *, ticket_id: int) -> PaymentProviderError:
    """The HTTP error for `exc`, raised by Daraja during `call` about `ticket_id`."""
    no_answer, busy, refused = _MESSAGES[call]
    if isinstance(exc, DarajaTimeout):
        return PaymentOutcomeUnknown(no_answer.format(ticket_id=ticket_id), ticketId=ticket_id)
    if isinstance(exc, DarajaBusy):
        return PaymentProviderBusy(
            busy.format(ticket_id=ticket_id), ticketId=ticket_id, retry_after=exc.retry_after
        )
    return PaymentProviderError(refused.format(ticket_id=ticket_id), ticketId=ticket_id)
