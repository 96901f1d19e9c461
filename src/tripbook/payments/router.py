from __future__ import annotations

import uuid
from datetime import timedelta

from asgi_correlation_id import correlation_id
from fastapi import APIRouter, Depends, Request, Response, status

from tripbook.core.dependencies import SessionDep, SettingsDep
from tripbook.core.idempotency import IdempotencyKeyHeader, run_idempotently
from tripbook.core.ratelimit import rate_limit
from tripbook.payments import service
from tripbook.payments.schemas import PaymentCreate, PaymentRead
from tripbook.reservations.schemas import ReservationRead
from tripbook.users.dependencies import CurrentUser

router = APIRouter(prefix="/v1/reservations", tags=["payments"])


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
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Accept a payment: 202 with the reservation ``payment_pending``; a worker settles it."""

    async def pay() -> ReservationRead:
        return await service.request_payment(
            session,
            user=user,
            reservation_id=reservation_id,
            payment_token=body.payment_token,
            payment_window=timedelta(seconds=settings.payment_window_s),
            request_id=correlation_id.get(),
        )

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
    """The latest charge: ``pending`` while a worker settles it (retrying with backoff when
    the provider fails; see ``attempts`` and ``last_error``), then ``succeeded`` or
    ``failed``. 404 ``PAYMENT_NOT_FOUND`` until the reservation is paid for."""
    return await service.get_latest_charge(session, user=user, reservation_id=reservation_id)
