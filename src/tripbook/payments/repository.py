"""Every query of the payments domain.

Lock order, as everywhere: the reservation row first, then its payment rows.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from tripbook.payments.models import Payment
from tripbook.reservations.models import Reservation


async def get_payment(
    session: AsyncSession, payment_id: uuid.UUID, *, for_update: bool = False
) -> Payment | None:
    query = select(Payment).where(Payment.id == payment_id)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(query)).scalar_one_or_none()


async def latest_charge(session: AsyncSession, reservation_id: uuid.UUID) -> Payment | None:
    query = (
        select(Payment)
        .where(Payment.reservation_id == reservation_id, Payment.kind == "charge")
        .order_by(Payment.created_at.desc(), Payment.id.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def reservation_status(session: AsyncSession, reservation_id: uuid.UUID) -> str | None:
    query = select(Reservation.status).where(Reservation.id == reservation_id)
    return (await session.execute(query)).scalar_one_or_none()


async def succeeded_charges(
    session: AsyncSession, reservation_id: uuid.UUID, *, payment_id: uuid.UUID | None
) -> list[Payment]:
    query = (
        select(Payment)
        .where(
            Payment.reservation_id == reservation_id,
            Payment.kind == "charge",
            Payment.status == "succeeded",
        )
        .order_by(Payment.created_at)
    )
    if payment_id is not None:
        query = query.where(Payment.id == payment_id)
    return list((await session.execute(query)).scalars())


async def lock_refund(session: AsyncSession, charge: Payment, *, idempotency_key: str) -> Payment:
    """The refund row for a charge, created on first use and locked for this transaction."""
    await session.execute(
        insert(Payment)
        .values(
            id=uuid.uuid4(),
            reservation_id=charge.reservation_id,
            kind="refund",
            status="pending",
            amount=charge.amount,
            currency=charge.currency,
            idempotency_key=idempotency_key,
            attempts=0,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
    )
    query = (
        select(Payment)
        .where(Payment.idempotency_key == idempotency_key)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(query)).scalar_one()
