"""`query-payment-status`: Daraja's STK Query, applied to the ticket."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from movietickets.daraja.client import DarajaClient
from movietickets.daraja.errors import (
    DarajaBusy,
    DarajaError,
    DarajaStillProcessing,
    DarajaTimeout,
)
from movietickets.db.base import utcnow
from movietickets.db.engine import locked_transaction
from movietickets.db.models import PaymentStatus as Status
from movietickets.db.models import PushRequest, Ticket
from movietickets.errors import (
    NotFound,
    PaymentOutcomeUnknown,
    PaymentProviderBusy,
    PaymentProviderError,
)
from movietickets.repositories.tickets import PushRequestRepository, TicketRepository
from movietickets.schemas.payments import PaymentStatusResult
from movietickets.services.settlement import PaymentResult, settle

ACCEPTED = "The service request has been accepted successfully"
PROCESSING = "The transaction is being processed"


def _from_ticket(
    push: PushRequest, ticket: Ticket, description: str = ACCEPTED
) -> PaymentStatusResult:
    return PaymentStatusResult(
        ResponseCode="0",
        ResponseDescription=description,
        MerchantRequestID=push.merchant_request_id,
        CheckoutRequestID=push.checkout_request_id,
        ResultCode=ticket.result_code,
        ResultDesc=ticket.result_desc,
        ticketId=ticket.ticket_id,
        paymentStatus=Status(ticket.payment_status),
    )


class PaymentStatusService:
    def __init__(
        self, sessionmaker: async_sessionmaker[AsyncSession], daraja: DarajaClient
    ) -> None:
        self.sessionmaker = sessionmaker
        self.daraja = daraja

    async def _load(self, checkout_request_id: str) -> tuple[PushRequest, Ticket]:
        async with self.sessionmaker() as session:
            push = await PushRequestRepository(session).by_checkout_id(checkout_request_id)
            ticket = await TicketRepository(session).get(push.ticket_id) if push else None
        if push is None or ticket is None:
            raise NotFound(f"No payment with CheckoutRequestID {checkout_request_id}")
        return push, ticket

    async def query(self, checkout_request_id: str) -> PaymentStatusResult:
        push, ticket = await self._load(checkout_request_id)
        # M-Pesa's final answer is already recorded: no need to ask again.
        if ticket.result_code is not None or ticket.payment_status == Status.PAID:
            return _from_ticket(push, ticket)
        try:
            answer = await self.daraja.stk_query(checkout_request_id)
        except DarajaStillProcessing:
            return _from_ticket(push, ticket, PROCESSING)
        except DarajaTimeout as exc:
            raise PaymentOutcomeUnknown(
                "M-Pesa did not answer the status query in time", ticketId=ticket.ticket_id
            ) from exc
        except DarajaBusy as exc:
            raise PaymentProviderBusy(
                "M-Pesa is busy; query again shortly",
                ticketId=ticket.ticket_id,
                headers={"Retry-After": str(int(exc.retry_after))},
            ) from exc
        except DarajaError as exc:
            raise PaymentProviderError(
                "M-Pesa could not answer the status query", ticketId=ticket.ticket_id
            ) from exc
        result = PaymentResult(result_code=answer.result_code, result_desc=answer.result_desc)
        async with locked_transaction(self.sessionmaker) as session:
            await settle(session, ticket.ticket_id, result, utcnow(), check_amount=False)
            settled = await TicketRepository(session).get(ticket.ticket_id)
            assert settled is not None
        return PaymentStatusResult(
            ResponseCode=answer.response_code,
            ResponseDescription=answer.response_description,
            MerchantRequestID=answer.merchant_request_id or push.merchant_request_id,
            CheckoutRequestID=answer.checkout_request_id,
            ResultCode=answer.result_code,
            ResultDesc=answer.result_desc,
            ticketId=settled.ticket_id,
            paymentStatus=Status(settled.payment_status),
        )
