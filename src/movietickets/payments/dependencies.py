"""The payment services. They run several short transactions of their own (never one held
across a call to Daraja), so they get the sessionmaker rather than the request's session."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from movietickets.dependencies import ResourcesDep
from movietickets.payments.callbacks import CallbackService
from movietickets.payments.idempotency import IdempotencyService
from movietickets.payments.purchase import PurchaseService
from movietickets.payments.status import PaymentStatusService


async def get_purchase_service(resources: ResourcesDep) -> PurchaseService:
    return PurchaseService(
        resources.sessionmaker,
        resources.daraja,
        resources.settings,
        resources.seat_holds,
        resources.push_records,
        resources.rate_limits,
    )


PurchaseServiceDep = Annotated[PurchaseService, Depends(get_purchase_service)]


async def get_idempotency_service(resources: ResourcesDep) -> IdempotencyService:
    return IdempotencyService(resources.sessionmaker, resources.settings)


IdempotencyServiceDep = Annotated[IdempotencyService, Depends(get_idempotency_service)]


async def get_payment_status_service(resources: ResourcesDep) -> PaymentStatusService:
    return PaymentStatusService(resources.sessionmaker, resources.daraja)


PaymentStatusServiceDep = Annotated[PaymentStatusService, Depends(get_payment_status_service)]


async def get_callback_service(resources: ResourcesDep) -> CallbackService:
    return CallbackService(
        resources.sessionmaker, resources.settings, resources.journal, resources.rate_limits
    )


CallbackServiceDep = Annotated[CallbackService, Depends(get_callback_service)]
