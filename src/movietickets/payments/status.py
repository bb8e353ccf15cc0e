"""`query-payment-status`: Daraja's STK Query, applied to the ticket."""

from __future__ import annotations

from movietickets.daraja.callback import PaymentResult
from movietickets.daraja.client import DarajaClient
from movietickets.daraja.errors import DarajaError, DarajaStillProcessing
from movietickets.db.engine import Sessionmaker, locked_transaction, read_transaction
from movietickets.db.models import PaymentStatus, PushRequest, Ticket
from movietickets.errors import NotFound
from movietickets.kit.clock import utcnow
from movietickets.payments.provider_errors import DarajaCall, provider_error
from movietickets.payments.repository import PushRequestRepository
from movietickets.payments.schemas import PaymentStatusResult
from movietickets.payments.settlement import settle
from movietickets.tickets.repository import TicketRepository

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
        paymentStatus=ticket.payment_status,
    )


class PaymentStatusService:
    def __init__(self, sessionmaker: Sessionmaker, daraja: DarajaClient) -> None:
        self.sessionmaker = sessionmaker
        self.daraja = daraja

    async def _load(self, checkout_request_id: str) -> tuple[PushRequest, Ticket]:
        async with read_transaction(self.sessionmaker) as session:
            push = await PushRequestRepository(session).by_checkout_id(checkout_request_id)
            ticket = await TicketRepository(session).get(push.ticket_id) if push else None
        if push is None or ticket is None:
            raise NotFound(f"No payment with CheckoutRequestID {checkout_request_id}")
        return push, ticket

    async def query(self, checkout_request_id: str) -> PaymentStatusResult:
        """The payment's state, asking Daraja only while M-Pesa's final answer is unknown.

        Raises NotFound for an unknown CheckoutRequestID, and PaymentProviderError (502, 503,
        504) when Daraja cannot answer.
        """
        push, ticket = await self._load(checkout_request_id)
        if ticket.result_code is not None or ticket.payment_status == PaymentStatus.PAID:
            return _from_ticket(push, ticket)
        try:
            answer = await self.daraja.stk_query(checkout_request_id)
        except DarajaStillProcessing:
            return _from_ticket(push, ticket, PROCESSING)
        except DarajaError as exc:
            raise provider_error(DarajaCall.QUERY, exc, ticket_id=ticket.ticket_id) from exc
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
            paymentStatus=settled.payment_status,
        )
