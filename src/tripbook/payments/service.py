"""Paying for a hold, settling the charge in a worker, refunding (DESIGN §4, §6).

The request only records intent: ``request_payment`` moves the reservation to
``payment_pending``, writes a pending charge and a ``payments.settle`` outbox event, all in
the request's transaction. A worker then settles in three steps, so that no transaction
or lock is held while the gateway is called:

    start_charge     record the attempt, in a short transaction of its own
    gateway.charge   outside any transaction, with the payment's idempotency key
    apply_charge     lock the reservation, then the payment; claim the event; apply

Refunds take the same three steps (``start_refunds``, ``gateway.refund``,
``apply_refunds``), one refund row per charge, keyed ``refund-<charge id>``.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from tripbook.core.logging import get_logger
from tripbook.core.outbox import claim_processing, enqueue
from tripbook.payments import repository
from tripbook.payments.exceptions import HoldExpired, PaymentNotFound
from tripbook.payments.gateway import Approved, GatewayResult, RetryableFailure
from tripbook.payments.models import Payment
from tripbook.payments.public_errors import public_error
from tripbook.payments.schemas import PaymentRead
from tripbook.reservations import repository as reservations_repository
from tripbook.reservations import service as reservations
from tripbook.reservations.models import ReservationStatus
from tripbook.reservations.schemas import ReservationRead
from tripbook.reservations.service import SeatsReleased
from tripbook.users.models import User

log = get_logger(__name__)

SETTLE_TASK = "payments.settle"
REFUND_TASK = "payments.refund"


class Settlement(enum.StrEnum):
    CONFIRMED = "confirmed"
    FAILED = "failed"
    # Approved after the reservation expired or was cancelled: the money goes back.
    REFUNDING = "refunding"
    RETRY = "retry"
    # Already settled: a duplicate delivery, or nothing left to do.
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class SettlementOutcome:
    settlement: Settlement
    released: SeatsReleased | None = None


@dataclass(frozen=True, slots=True)
class ChargeAttempt:
    payment_id: uuid.UUID
    amount: int
    currency: str
    token: str
    idempotency_key: str
    attempt: int


@dataclass(frozen=True, slots=True)
class RefundAttempt:
    refund_id: uuid.UUID
    charge_reference: str
    amount: int
    idempotency_key: str


async def request_payment(
    session: AsyncSession,
    *,
    user: User,
    reservation_id: uuid.UUID,
    payment_token: str,
    payment_window: timedelta,
    request_id: str | None,
) -> ReservationRead:
    """Start paying for the caller's hold; the charge itself is settled by a worker."""
    reservation = await reservations.get_reservation(
        session, user=user, reservation_id=reservation_id, for_update=True
    )
    now = datetime.now(UTC)
    if reservation.status == ReservationStatus.HELD and reservation.expires_at <= now:
        # The sweep has not released it yet, but the hold is over.
        raise HoldExpired(reservation_id=str(reservation.id))
    await reservations.transition(
        session, reservation, ReservationStatus.PAYMENT_PENDING, request_id=request_id
    )
    if reservation.total_amount == 0:
        # Nothing to charge: a free reservation is confirmed at once.
        await reservations.transition(
            session, reservation, ReservationStatus.CONFIRMED, request_id=request_id
        )
    else:
        # The hold now lasts long enough for the worker to settle, retries included.
        reservation.expires_at = now + payment_window
        payment_id = uuid.uuid4()
        session.add(
            Payment(
                id=payment_id,
                reservation_id=reservation.id,
                kind="charge",
                status="pending",
                amount=reservation.total_amount,
                currency=reservation.currency,
                idempotency_key=f"charge-{payment_id}",
                payment_token=payment_token,
                attempts=0,
            )
        )
        enqueue(session, SETTLE_TASK, {"payment_id": str(payment_id)}, request_id=request_id)
    await session.flush()
    return reservations.to_read(reservation)


async def get_latest_charge(
    session: AsyncSession, *, user: User, reservation_id: uuid.UUID
) -> PaymentRead:
    """The caller's reservation's latest charge (ops: anyone's), errors in client-safe words."""
    reservation = await reservations.get_reservation(
        session, user=user, reservation_id=reservation_id
    )
    charge = await repository.latest_charge(session, reservation.id)
    if charge is None:
        raise PaymentNotFound(reservation_id=str(reservation.id))
    return PaymentRead.model_validate(
        {
            "status": charge.status,
            "attempts": charge.attempts,
            "last_error": public_error(charge.status, charge.error),
            "updated_at": charge.updated_at,
        }
    )


async def start_charge(
    session: AsyncSession, *, event_id: uuid.UUID, payment_id: uuid.UUID
) -> ChargeAttempt | None:
    """Record one more attempt before calling the gateway; None when nothing is to charge."""
    payment = await repository.get_payment(session, payment_id, for_update=True)
    if payment is None or payment.kind != "charge" or payment.status != "pending":
        return None
    status = await repository.reservation_status(session, payment.reservation_id)
    if status != ReservationStatus.PAYMENT_PENDING and payment.attempts == 0:
        # Never sent to the gateway, and the reservation stopped waiting: take no money.
        if await claim_processing(session, event_id, SETTLE_TASK):
            payment.status = "failed"
            payment.error = f"reservation {status} before the charge was attempted"
        return None
    if payment.payment_token is None:
        return None
    payment.attempts += 1
    return ChargeAttempt(
        payment_id=payment.id,
        amount=payment.amount,
        currency=payment.currency,
        token=payment.payment_token,
        idempotency_key=payment.idempotency_key,
        attempt=payment.attempts,
    )


async def apply_charge(
    session: AsyncSession,
    *,
    event_id: uuid.UUID,
    payment_id: uuid.UUID,
    result: GatewayResult,
    final: bool,
    request_id: str | None,
) -> SettlementOutcome:
    """Apply the gateway's answer. ``final``: no retry is left, so a failure is a decline."""
    found = await repository.get_payment(session, payment_id)
    if found is None:
        return SettlementOutcome(Settlement.SKIPPED)
    reservation = await reservations_repository.get_with_passengers(
        session, found.reservation_id, for_update=True
    )
    payment = await repository.get_payment(session, payment_id, for_update=True)
    if reservation is None or payment is None or payment.status != "pending":
        return SettlementOutcome(Settlement.SKIPPED)
    if isinstance(result, RetryableFailure) and not final:
        payment.error = result.reason
        return SettlementOutcome(Settlement.RETRY)
    if not await claim_processing(session, event_id, SETTLE_TASK):
        return SettlementOutcome(Settlement.SKIPPED)
    pending = reservation.status == ReservationStatus.PAYMENT_PENDING

    if isinstance(result, Approved):
        payment.status = "succeeded"
        payment.gateway_reference = result.reference
        payment.error = None
        if pending:
            await reservations.transition(
                session, reservation, ReservationStatus.CONFIRMED, request_id=request_id
            )
            return SettlementOutcome(Settlement.CONFIRMED)
        log.warning("charge_after_reservation_closed", status=reservation.status)
        enqueue(
            session,
            REFUND_TASK,
            {"reservation_id": str(reservation.id), "payment_id": str(payment.id)},
            request_id=request_id,
        )
        return SettlementOutcome(Settlement.REFUNDING)

    payment.status = "failed"
    payment.error = result.reason
    released = None
    if pending:
        released = await reservations.transition(
            session, reservation, ReservationStatus.PAYMENT_FAILED, request_id=request_id
        )
    return SettlementOutcome(Settlement.FAILED, released)


async def start_refunds(
    session: AsyncSession, *, reservation_id: uuid.UUID, payment_id: uuid.UUID | None
) -> list[RefundAttempt]:
    """Refund rows for the reservation's charges (or one charge) still to be refunded."""
    attempts = []
    for charge in await repository.succeeded_charges(
        session, reservation_id, payment_id=payment_id
    ):
        if charge.gateway_reference is None:
            log.error("charge_without_reference", payment_id=str(charge.id))
            continue
        refund = await repository.lock_refund(
            session, charge, idempotency_key=f"refund-{charge.id}"
        )
        if refund.status != "pending":
            continue
        refund.attempts += 1
        attempts.append(
            RefundAttempt(
                refund_id=refund.id,
                charge_reference=charge.gateway_reference,
                amount=refund.amount,
                idempotency_key=refund.idempotency_key,
            )
        )
    return attempts


async def apply_refunds(
    session: AsyncSession,
    *,
    event_id: uuid.UUID,
    results: dict[uuid.UUID, GatewayResult],
    final: bool,
) -> bool:
    """Record the refunds' outcomes; True when one must be retried."""
    retry = False
    for refund_id, result in results.items():
        refund = await repository.get_payment(session, refund_id, for_update=True)
        if refund is None or refund.status != "pending":
            continue
        if isinstance(result, Approved):
            refund.status = "succeeded"
            refund.gateway_reference = result.reference
            refund.error = None
        elif isinstance(result, RetryableFailure) and not final:
            refund.error = result.reason
            retry = True
        else:
            refund.status = "failed"
            refund.error = result.reason
            # Money we owe and could not return: someone has to look at it.
            log.error("refund_failed", refund_id=str(refund.id), reason=result.reason)
    if not retry:
        await claim_processing(session, event_id, REFUND_TASK)
    return retry
