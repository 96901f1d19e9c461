"""Paying for a hold, and what the customer sees of it (DESIGN §4, §6).

The request only records intent: ``request_payment`` moves the reservation to
``payment_pending`` (re-taking its seats after a decline), writes a pending charge with a
key of its own and a ``payments.settle`` outbox event, all in the request's transaction.
A worker settles it (``settlement.py``); reconciliation finishes what the worker could not.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from tripbook.core.money import Money
from tripbook.core.outbox import enqueue
from tripbook.payments import repository
from tripbook.payments.exceptions import HoldExpired, PaymentNotFound
from tripbook.payments.models import Payment
from tripbook.payments.public_errors import public_error
from tripbook.payments.schemas import PaymentRead, RefundRead
from tripbook.payments.state import PaymentKind, PaymentStatus
from tripbook.reservations import service as reservations
from tripbook.reservations.models import ReservationStatus
from tripbook.reservations.schemas import ReservationRead
from tripbook.reservations.service import SeatsChanged
from tripbook.reservations.state import effective_status
from tripbook.users.models import User

SETTLE_TASK = "payments.settle"


async def request_payment(
    session: AsyncSession,
    *,
    user: User,
    reservation_id: uuid.UUID,
    payment_token: str,
    payment_window: timedelta,
    request_id: str | None,
) -> tuple[ReservationRead, SeatsChanged | None]:
    """Start paying for the caller's hold, or pay again after a decline (which takes the
    seats back, or fails with ``SEATS_UNAVAILABLE``); a worker settles the charge.

    Returns the reservation and, when seats were taken back, the trip whose cache is stale.
    """
    reservation = await reservations.get_reservation(
        session, user=user, reservation_id=reservation_id, for_update=True
    )
    now = datetime.now(UTC)
    if (
        effective_status(reservation.status, reservation.expires_at, now)
        is ReservationStatus.EXPIRED
    ):
        # Swept or not, the hold is over.
        raise HoldExpired(reservation_id=str(reservation.id))
    changed = await reservations.transition(
        session, reservation, ReservationStatus.PAYMENT_PENDING, request_id=request_id
    )
    if reservation.total_amount == 0:
        # Nothing to charge: a free reservation is confirmed at once.
        await reservations.transition(
            session, reservation, ReservationStatus.CONFIRMED, request_id=request_id
        )
    else:
        # The reservation now waits long enough for the worker to settle, retries included.
        reservation.expires_at = now + payment_window
        payment_id = uuid.uuid4()
        session.add(
            Payment(
                id=payment_id,
                reservation_id=reservation.id,
                kind=PaymentKind.CHARGE.value,
                status=PaymentStatus.PENDING.value,
                amount=reservation.total_amount,
                currency=reservation.currency,
                idempotency_key=f"charge-{payment_id}",  # a new key for every payment
                payment_token=payment_token,
                attempts=0,
            )
        )
        enqueue(session, SETTLE_TASK, {"payment_id": str(payment_id)}, request_id=request_id)
    await session.flush()
    return reservations.to_read(reservation), changed


async def get_payment(
    session: AsyncSession, *, user: User, reservation_id: uuid.UUID
) -> PaymentRead:
    """The caller's reservation's latest charge and its refunds (ops: anyone's), errors in
    client-safe words."""
    reservation = await reservations.get_reservation(
        session, user=user, reservation_id=reservation_id
    )
    charge = await repository.latest_charge(session, reservation.id)
    if charge is None:
        raise PaymentNotFound(reservation_id=str(reservation.id))
    refunds = [
        RefundRead(
            status=refund.status,
            amount=Money(amount=refund.amount, currency=refund.currency),
            created_at=refund.created_at,
            updated_at=refund.updated_at,
        )
        for refund in await repository.refunds_of(session, charge.id)
    ]
    return PaymentRead(
        status=charge.status,
        amount=Money(amount=charge.amount, currency=charge.currency),
        attempts=charge.attempts,
        last_error=public_error(charge.status, charge.error),
        refunds=refunds,
        created_at=charge.created_at,
        updated_at=charge.updated_at,
    )
