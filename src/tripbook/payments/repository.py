"""Every query of the payments domain.

Lock order, as everywhere: the reservation row first, then its payment rows, then the
departure row (seats).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from tripbook.core.pagination import after_time_id
from tripbook.payments.models import Payment
from tripbook.payments.state import OPEN, PaymentKind, PaymentStatus
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
        .where(Payment.reservation_id == reservation_id, Payment.kind == PaymentKind.CHARGE)
        .order_by(Payment.created_at.desc(), Payment.id.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def refunds_of(session: AsyncSession, charge_id: uuid.UUID) -> list[Payment]:
    query = select(Payment).where(Payment.charge_id == charge_id).order_by(Payment.created_at)
    return list((await session.execute(query)).scalars())


async def succeeded_charges(session: AsyncSession, reservation_id: uuid.UUID) -> list[Payment]:
    query = (
        select(Payment)
        .where(
            Payment.reservation_id == reservation_id,
            Payment.kind == PaymentKind.CHARGE,
            Payment.status == PaymentStatus.SUCCEEDED,
        )
        .order_by(Payment.created_at)
    )
    return list((await session.execute(query)).scalars())


async def insert_refund(session: AsyncSession, charge: Payment) -> uuid.UUID | None:
    """A pending refund of the whole charge; None when the charge has one already."""
    refund_id = uuid.uuid4()
    result = await session.execute(
        insert(Payment)
        .values(
            id=refund_id,
            reservation_id=charge.reservation_id,
            kind=PaymentKind.REFUND.value,
            status=PaymentStatus.PENDING.value,
            charge_id=charge.id,
            amount=charge.amount,
            currency=charge.currency,
            idempotency_key=f"refund-{charge.id}",
            attempts=0,
        )
        .on_conflict_do_nothing(index_elements=["charge_id"])
        .returning(Payment.id)
    )
    return result.scalar_one_or_none()


async def open_payments(
    session: AsyncSession, *, untouched_since: datetime, limit: int
) -> list[tuple[uuid.UUID, str]]:
    """Charges and refunds whose outcome is still open and that nobody touched lately."""
    query = (
        select(Payment.id, Payment.kind)
        .where(
            Payment.status.in_([status.value for status in OPEN]),
            Payment.updated_at < untouched_since,
        )
        .order_by(Payment.updated_at)
        .limit(limit)
    )
    return [(row.id, row.kind) for row in await session.execute(query)]


async def list_refunds(
    session: AsyncSession,
    *,
    status: PaymentStatus | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Payment]:
    """Newest first, for ops."""
    query = (
        select(Payment)
        .where(Payment.kind == PaymentKind.REFUND)
        .order_by(Payment.created_at.desc(), Payment.id.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(Payment.status == status.value)
    if after is not None:
        query = query.where(after_time_id(Payment.created_at, Payment.id, after))
    return list((await session.execute(query)).scalars())


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One of our charges or refunds, with what the ledger check needs beside it."""

    kind: str
    idempotency_key: str
    status: str
    reservation_id: uuid.UUID
    reservation_status: str


async def ledger_entries(
    session: AsyncSession, *, reservation_ids: list[uuid.UUID] | None
) -> list[LedgerEntry]:
    query = (
        select(
            Payment.kind,
            Payment.idempotency_key,
            Payment.status,
            Payment.reservation_id,
            Reservation.status.label("reservation_status"),
        )
        .join(Reservation, Reservation.id == Payment.reservation_id)
        .order_by(Payment.created_at)
    )
    if reservation_ids is not None:
        query = query.where(Payment.reservation_id.in_(reservation_ids))
    return [LedgerEntry(**row._asdict()) for row in await session.execute(query)]


async def confirmed_reservations(
    session: AsyncSession, *, reservation_ids: list[uuid.UUID] | None
) -> list[uuid.UUID]:
    """Confirmed reservations that cost money (a free one is confirmed without a charge)."""
    query = select(Reservation.id).where(
        Reservation.status == "confirmed", Reservation.total_amount > 0
    )
    if reservation_ids is not None:
        query = query.where(Reservation.id.in_(reservation_ids))
    return list((await session.execute(query)).scalars())
