"""One attempt at a charge or a refund, from start to applied answer, and reconciliation.

The worker's tasks run one attempt per delivery (``attempt_charge``, ``attempt_refund``).
Reconciliation (``reconcile``, run by beat) takes every charge and refund whose outcome
is still open and that nobody touched for ``TRIPBOOK_PAYMENT_RECONCILE_AFTER_S``, and runs
the same attempt again with the same idempotency key, until the gateway's answer is final:

- a reservation still waiting for the money: the charge is sent again (the gateway
  replays the original outcome, or applies it now if it never had it);
- a reservation that stopped waiting (expired, cancelled): the key is *looked up*, so a
  charge that never reached the gateway is failed without taking money now, and one that
  did is recorded and refunded;
- a refund: sent again until it is applied or definitely refused.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tripbook.core.db import unit_of_work
from tripbook.core.logging import get_logger
from tripbook.payments import refunds, repository, settlement
from tripbook.payments.gateway import (
    Declined,
    GatewayResult,
    LookupResult,
    PaymentGateway,
    RetryableFailure,
    Unseen,
)
from tripbook.payments.refunds import RefundOutcome
from tripbook.payments.settlement import Settlement, SettlementOutcome
from tripbook.payments.state import PaymentKind
from tripbook.settings import Settings

log = get_logger(__name__)

# Gateway calls one reconciliation pass has in flight at once.
CONCURRENCY = 4
NEVER_RECEIVED = "not_received_by_gateway"

OnSeatsChanged = Callable[[int], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Payments:
    """What an attempt needs: the database, the gateway, the settings."""

    sessionmaker: async_sessionmaker[AsyncSession]
    gateway: PaymentGateway
    settings: Settings


async def attempt_charge(
    payments: Payments,
    *,
    payment_id: uuid.UUID,
    request_id: str | None,
    untouched_since: datetime | None = None,
) -> SettlementOutcome:
    """Start, call the gateway, apply. ``untouched_since``: reconciliation's cutoff."""
    async with unit_of_work(payments.sessionmaker) as session:
        start = await settlement.start_charge(
            session, payment_id=payment_id, request_id=request_id, untouched_since=untouched_since
        )
    attempt = start.attempt
    if attempt is None:
        return SettlementOutcome(Settlement.SKIPPED, start.released)
    result: LookupResult
    if attempt.payable:
        result = await payments.gateway.charge(
            amount=attempt.amount,
            currency=attempt.currency,
            token=attempt.token,
            idempotency_key=attempt.idempotency_key,
            request_id=request_id,
        )
    else:
        # Nobody waits for this money any more: find out whether it was taken, take none.
        found = await payments.gateway.find_charge(
            idempotency_key=attempt.idempotency_key, request_id=request_id
        )
        result = _unseen_means(found, reconciling=untouched_since is not None)
    async with unit_of_work(payments.sessionmaker) as session:
        outcome = await settlement.apply_charge(
            session,
            payment_id=payment_id,
            result=result,
            retry_window=timedelta(seconds=payments.settings.hold_ttl_s),
            request_id=request_id,
        )
    log.info(
        "settlement",
        payment_id=str(payment_id),
        attempt=attempt.attempt,
        result=type(result).__name__,
        settlement=outcome.settlement.value,
    )
    return outcome


def _unseen_means(found: LookupResult, *, reconciling: bool) -> GatewayResult:
    """A lookup that found nothing is final only once no request of ours can still arrive
    (reconciliation's grace is well above the gateway timeout); right after a timeout, it
    could be on its way."""
    if not isinstance(found, Unseen):
        return found
    return Declined(NEVER_RECEIVED) if reconciling else RetryableFailure("not_seen_yet")


async def attempt_refund(
    payments: Payments,
    *,
    refund_id: uuid.UUID,
    request_id: str | None,
    untouched_since: datetime | None = None,
) -> RefundOutcome:
    async with unit_of_work(payments.sessionmaker) as session:
        attempt = await refunds.start_refund(
            session, refund_id=refund_id, untouched_since=untouched_since
        )
    if attempt is None:
        return RefundOutcome.SKIPPED
    result = await payments.gateway.refund(
        charge_reference=attempt.charge_reference,
        amount=attempt.amount,
        idempotency_key=attempt.idempotency_key,
        request_id=request_id,
    )
    async with unit_of_work(payments.sessionmaker) as session:
        outcome = await refunds.apply_refund(
            session, refund_id=refund_id, result=result, request_id=request_id
        )
    log.info(
        "refund", refund_id=str(refund_id), result=type(result).__name__, outcome=outcome.value
    )
    return outcome


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    charges: dict[str, int]
    refunds: dict[str, int]


async def reconcile(
    payments: Payments, *, request_id: str | None, on_seats_changed: OnSeatsChanged
) -> ReconcileReport:
    """One pass over the open charges and refunds nobody touched for the grace period."""
    settings = payments.settings
    cutoff = datetime.now(UTC) - timedelta(seconds=settings.payment_reconcile_after_s)
    async with payments.sessionmaker() as session:
        due = await repository.open_payments(
            session, untouched_since=cutoff, limit=settings.payment_reconcile_batch
        )
    report = ReconcileReport(charges={}, refunds={})
    gate = asyncio.Semaphore(CONCURRENCY)

    async def settle(payment_id: uuid.UUID, kind: str) -> None:
        async with gate:
            if kind == PaymentKind.CHARGE:
                outcome = await attempt_charge(
                    payments, payment_id=payment_id, request_id=request_id, untouched_since=cutoff
                )
                if outcome.released is not None:
                    await on_seats_changed(outcome.released.trip_id)
                counts, name = report.charges, outcome.settlement.value
            else:
                refunded = await attempt_refund(
                    payments, refund_id=payment_id, request_id=request_id, untouched_since=cutoff
                )
                counts, name = report.refunds, refunded.value
            counts[name] = counts.get(name, 0) + 1

    results = await asyncio.gather(
        *(settle(payment_id, kind) for payment_id, kind in due), return_exceptions=True
    )
    for (payment_id, kind), result in zip(due, results, strict=True):
        if isinstance(result, BaseException):  # the next pass takes it again
            log.error("reconcile_failed", payment_id=str(payment_id), kind=kind, exc_info=result)
    if due:
        log.info("payments_reconciled", charges=report.charges, refunds=report.refunds)
    return report
