from __future__ import annotations

import uuid
from datetime import timedelta

from asgi_correlation_id import correlation_id
from fastapi import APIRouter, Depends, Request, Response, status

from tripbook.core.db import after_commit
from tripbook.core.dependencies import RedisDep, SessionDep, SettingsDep
from tripbook.core.idempotency import IdempotencyKeyHeader, run_idempotently
from tripbook.core.pagination import CursorQuery, LimitQuery, Page
from tripbook.core.ratelimit import rate_limit
from tripbook.payments import refunds, service
from tripbook.payments.schemas import PaymentCreate, PaymentRead, RefundView
from tripbook.payments.state import PaymentStatus
from tripbook.reservations.schemas import ReservationRead
from tripbook.trips import cache
from tripbook.users.dependencies import CurrentUser, OpsUser

router = APIRouter(prefix="/v1/reservations", tags=["payments"])
ops_router = APIRouter(
    prefix="/v1/ops/refunds", tags=["ops"], dependencies=[Depends(rate_limit("default"))]
)


@router.post(
    "/{reservation_id}/payment",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ReservationRead,
    # Paying is part of booking: it counts against the same per-user budget as holding.
    dependencies=[Depends(rate_limit("reservations"))],
)
async def pay_reservation(
    reservation_id: uuid.UUID,
    body: PaymentCreate,
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Accept a payment: 202 with the reservation ``payment_pending``; a worker settles it.

    A ``payment_failed`` reservation may be paid again (another card) until it expires:
    its seats are taken back, or 409 ``SEATS_UNAVAILABLE`` when they are gone. A hold
    past ``expires_at`` is 409 ``HOLD_EXPIRED``, swept or not."""

    async def pay() -> ReservationRead:
        reservation, changed = await service.request_payment(
            session,
            user=user,
            reservation_id=reservation_id,
            payment_token=body.payment_token,
            payment_window=timedelta(seconds=settings.payment_window_s),
            request_id=correlation_id.get(),
        )
        if changed is not None:
            after_commit(session, lambda: cache.invalidate(redis, settings, changed.trip_id))
        return reservation

    return await run_idempotently(
        request,
        session,
        user_id=user.id,
        key=idempotency_key,
        ttl=timedelta(seconds=settings.idempotency_ttl_s),
        status_code=status.HTTP_202_ACCEPTED,
        work=pay,
    )


@router.get(
    "/{reservation_id}/payment",
    response_model=PaymentRead,
    dependencies=[Depends(rate_limit("default"))],
)
async def get_payment(
    reservation_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> PaymentRead:
    """The latest charge and its refunds. A charge is ``pending`` until sent, ``unknown``
    while the provider's answer is not known (retried with backoff, then reconciled; see
    ``attempts`` and ``last_error``), then ``succeeded`` or ``failed``. 404
    ``PAYMENT_NOT_FOUND`` until the reservation is paid for."""
    return await service.get_payment(session, user=user, reservation_id=reservation_id)


@ops_router.get("", response_model=Page[RefundView])
async def list_refunds(
    _: OpsUser,
    session: SessionDep,
    status: PaymentStatus | None = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 20,
) -> Page[RefundView]:
    """Refunds, newest first; ``?status=refund_failed`` lists those the provider refused."""
    return await refunds.list_refunds(session, status=status, cursor=cursor, limit=limit)


@ops_router.post(
    "/{refund_id}/retry", status_code=status.HTTP_202_ACCEPTED, response_model=RefundView
)
async def retry_refund(refund_id: uuid.UUID, _: OpsUser, session: SessionDep) -> RefundView:
    """Send a ``refund_failed`` refund again, under a new idempotency key; 409
    ``INVALID_PAYMENT_STATE`` for any other refund."""
    return await refunds.retry_refund(session, refund_id=refund_id, request_id=correlation_id.get())
