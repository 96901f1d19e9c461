"""Settling a charge, in two short transactions around the gateway call (DESIGN §6).

    start_charge     lock; a charge never sent to a reservation that closed fails here,
                     without the gateway; otherwise mark it ``unknown`` and count the attempt
    gateway          outside any transaction, with the charge's idempotency key
    apply_charge     lock the reservation, then the charge; apply a definite answer

Only a definite answer is final. A timeout, a reset, a 5xx or a 409 leaves the charge
``unknown``: the worker retries it, then reconciliation keeps asking until it knows.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from tripbook.core.logging import get_logger
from tripbook.core.metrics import PAYMENTS
from tripbook.payments import refunds, repository
from tripbook.payments.gateway import Approved, Declined, GatewayResult
from tripbook.payments.models import Payment
from tripbook.payments.state import OPEN, PaymentKind, PaymentStatus
from tripbook.reservations import repository as reservations_repository
from tripbook.reservations import service as reservations
from tripbook.reservations.models import Reservation, ReservationStatus
from tripbook.reservations.service import SeatsChanged

log = get_logger(__name__)


class Settlement(enum.StrEnum):
    CONFIRMED = "confirmed"
    FAILED = "failed"
    # Approved after the reservation expired or was cancelled: the money goes back.
    REFUNDING = "refunding"
    # No definite answer yet: retry, or leave it to reconciliation.
    RETRY = "retry"
    # Nothing to do: already final, touched by someone else, or never to be sent.
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class SettlementOutcome:
    settlement: Settlement
    released: SeatsChanged | None = None  # seats went back: the trip's cache is stale


@dataclass(frozen=True, slots=True)
class ChargeAttempt:
    payment_id: uuid.UUID
    amount: int
    currency: str
    token: str
    idempotency_key: str
    attempt: int
    # The reservation still waits for this money (else a lookup, not a charge, is due).
    payable: bool


@dataclass(frozen=True, slots=True)
class ChargeStart:
    attempt: ChargeAttempt | None  # None: nothing to send
    released: SeatsChanged | None = None


async def _lock(session: AsyncSession, payment_id: uuid.UUID) -> tuple[Reservation, Payment] | None:
    """The charge's reservation and then the charge, locked in that order."""
    found = await repository.get_payment(session, payment_id)
    if found is None or found.kind != PaymentKind.CHARGE:
        return None
    reservation = await reservations_repository.get_with_passengers(
        session, found.reservation_id, for_update=True
    )
    payment = await repository.get_payment(session, payment_id, for_update=True)
    if reservation is None or payment is None:
        return None
    return reservation, payment


async def start_charge(
    session: AsyncSession,
    *,
    payment_id: uuid.UUID,
    request_id: str | None,
    untouched_since: datetime | None = None,
) -> ChargeStart:
    """Record one more attempt before calling the gateway.

    ``untouched_since`` (reconciliation): skip a charge someone touched after that.
    """
    locked = await _lock(session, payment_id)
    if locked is None:
        return ChargeStart(None)
    reservation, payment = locked
    if payment.status not in OPEN:
        return ChargeStart(None)
    if untouched_since is not None and payment.updated_at >= untouched_since:
        return ChargeStart(None)
    payable = reservation.status == ReservationStatus.PAYMENT_PENDING
    if payment.status == PaymentStatus.PENDING:
        # Never sent: when the reservation stopped waiting, no money is taken at all.
        if not payable:
            _fail(payment, f"reservation {reservation.status} before the charge was attempted")
            return ChargeStart(None)
        if reservation.expires_at <= datetime.now(UTC):
            _fail(payment, "the payment window closed before the charge was attempted")
            released = await reservations.transition(
                session, reservation, ReservationStatus.EXPIRED, request_id=request_id
            )
            return ChargeStart(None, released)
    if payment.payment_token is None:  # only a final charge forgets its token
        log.error("open_charge_without_token", payment_id=str(payment.id))
        return ChargeStart(None)
    payment.move(PaymentStatus.UNKNOWN)  # from here on, the gateway may have it
    payment.attempts += 1
    attempt = ChargeAttempt(
        payment_id=payment.id,
        amount=payment.amount,
        currency=payment.currency,
        token=payment.payment_token,
        idempotency_key=payment.idempotency_key,
        attempt=payment.attempts,
        payable=payable,
    )
    return ChargeStart(attempt)


async def apply_charge(
    session: AsyncSession,
    *,
    payment_id: uuid.UUID,
    result: GatewayResult,
    retry_window: timedelta,
    request_id: str | None,
) -> SettlementOutcome:
    """Apply the gateway's answer; anything but a definite one leaves the charge open.

    ``retry_window``: how long a declined reservation may be paid again before it lapses.
    """
    locked = await _lock(session, payment_id)
    if locked is None:
        return SettlementOutcome(Settlement.SKIPPED)
    reservation, payment = locked
    if payment.status not in OPEN:
        return SettlementOutcome(Settlement.SKIPPED)
    pending = reservation.status == ReservationStatus.PAYMENT_PENDING

    if isinstance(result, Approved):
        payment.move(PaymentStatus.SUCCEEDED)
        payment.gateway_reference = result.reference
        payment.error = None
        PAYMENTS.labels(PaymentKind.CHARGE, PaymentStatus.SUCCEEDED).inc()
        if pending:
            await reservations.transition(
                session, reservation, ReservationStatus.CONFIRMED, request_id=request_id
            )
            return SettlementOutcome(Settlement.CONFIRMED)
        log.warning("charge_after_reservation_closed", status=reservation.status)
        await refunds.queue_refund(session, payment, request_id=request_id)
        return SettlementOutcome(Settlement.REFUNDING)

    if not isinstance(result, Declined):
        payment.error = result.reason  # still unknown: asked again later
        return SettlementOutcome(Settlement.RETRY)

    _fail(payment, result.reason)
    released = None
    if pending:
        released = await reservations.transition(
            session, reservation, ReservationStatus.PAYMENT_FAILED, request_id=request_id
        )
        reservation.expires_at = datetime.now(UTC) + retry_window  # to pay with another card
    return SettlementOutcome(Settlement.FAILED, released)


def _fail(payment: Payment, reason: str) -> None:
    payment.move(PaymentStatus.FAILED)
    payment.error = reason
    PAYMENTS.labels(PaymentKind.CHARGE, PaymentStatus.FAILED).inc()
