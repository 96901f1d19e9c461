"""Refunds: queued with the change that owes the money, sent by a worker, never lost.

A refund row is written in the same transaction as the cancellation (or the late
approval) that makes it owed, with its ``payments.refund`` outbox event. The worker then
takes the same two transactions around the gateway call as a charge. A timeout leaves it
``unknown`` (retried, then reconciled); a definite refusal makes it ``refund_failed``,
counted, logged as an error, listed for ops and retryable by them with a new key.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from tripbook.core.logging import get_logger
from tripbook.core.metrics import PAYMENTS
from tripbook.core.outbox import enqueue
from tripbook.core.pagination import Page, decode_time_id_cursor, encode_time_id_cursor
from tripbook.notifications.service import EMAIL_TASK
from tripbook.payments import repository
from tripbook.payments.exceptions import RefundNotFound
from tripbook.payments.gateway import Approved, Declined, GatewayResult
from tripbook.payments.models import Payment
from tripbook.payments.schemas import RefundView
from tripbook.payments.state import OPEN, PaymentKind, PaymentStatus

log = get_logger(__name__)

REFUND_TASK = "payments.refund"


class RefundOutcome(enum.StrEnum):
    SUCCEEDED = "succeeded"
    REFUSED = "refund_failed"
    RETRY = "retry"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class RefundAttempt:
    refund_id: uuid.UUID
    charge_reference: str
    amount: int
    idempotency_key: str


async def queue_refund(session: AsyncSession, charge: Payment, *, request_id: str | None) -> bool:
    """Owe the whole of a succeeded charge back, once; False when it is owed already."""
    refund_id = await repository.insert_refund(session, charge)
    if refund_id is None:
        return False
    enqueue(session, REFUND_TASK, {"refund_id": str(refund_id)}, request_id=request_id)
    return True


async def queue_refunds(
    session: AsyncSession, reservation_id: uuid.UUID, *, request_id: str | None
) -> int:
    """Refund every succeeded charge of a reservation not refunded yet; how many were queued."""
    queued = 0
    for charge in await repository.succeeded_charges(session, reservation_id):
        queued += await queue_refund(session, charge, request_id=request_id)
    return queued


async def start_refund(
    session: AsyncSession, *, refund_id: uuid.UUID, untouched_since: datetime | None = None
) -> RefundAttempt | None:
    refund = await repository.get_payment(session, refund_id, for_update=True)
    if refund is None or refund.kind != PaymentKind.REFUND or refund.status not in OPEN:
        return None
    if untouched_since is not None and refund.updated_at >= untouched_since:
        return None
    assert refund.charge_id is not None  # the table's check says so
    charge = await repository.get_payment(session, refund.charge_id)
    if charge is None or charge.gateway_reference is None:
        log.error("refund_of_unknown_charge", refund_id=str(refund.id))
        return None
    refund.move(PaymentStatus.UNKNOWN)
    refund.attempts += 1
    return RefundAttempt(
        refund_id=refund.id,
        charge_reference=charge.gateway_reference,
        amount=refund.amount,
        idempotency_key=refund.idempotency_key,
    )


async def apply_refund(
    session: AsyncSession, *, refund_id: uuid.UUID, result: GatewayResult, request_id: str | None
) -> RefundOutcome:
    refund = await repository.get_payment(session, refund_id, for_update=True)
    if refund is None or refund.status not in OPEN:
        return RefundOutcome.SKIPPED
    if isinstance(result, Approved):
        refund.move(PaymentStatus.SUCCEEDED)
        refund.gateway_reference = result.reference
        refund.error = None
        PAYMENTS.labels(PaymentKind.REFUND, PaymentStatus.SUCCEEDED).inc()
        payload = {"template": "refund_issued", "reservation_id": str(refund.reservation_id)}
        enqueue(session, EMAIL_TASK, payload, request_id=request_id)
        return RefundOutcome.SUCCEEDED
    if isinstance(result, Declined):
        refund.move(PaymentStatus.REFUND_FAILED)
        refund.error = result.reason
        PAYMENTS.labels(PaymentKind.REFUND, PaymentStatus.REFUND_FAILED).inc()
        # Money we owe and could not return: ops must look (GET /v1/ops/refunds).
        log.error("refund_failed", refund_id=str(refund.id), reason=result.reason)
        return RefundOutcome.REFUSED
    refund.error = result.reason
    return RefundOutcome.RETRY


async def retry_refund(
    session: AsyncSession, *, refund_id: uuid.UUID, request_id: str | None
) -> RefundView:
    """Ops: send a refused refund again, under a new key (the old one's "no" is final)."""
    refund = await repository.get_payment(session, refund_id, for_update=True)
    if refund is None or refund.kind != PaymentKind.REFUND:
        raise RefundNotFound(refund_id=str(refund_id))
    refund.move(PaymentStatus.PENDING)
    refund.idempotency_key = f"refund-{refund.charge_id}-retry-{refund.attempts}"
    enqueue(session, REFUND_TASK, {"refund_id": str(refund.id)}, request_id=request_id)
    await session.flush()
    log.info("refund_retried_by_ops", refund_id=str(refund.id))
    return RefundView.of(refund)


async def list_refunds(
    session: AsyncSession, *, status: PaymentStatus | None, cursor: str | None, limit: int
) -> Page[RefundView]:
    after = decode_time_id_cursor(cursor) if cursor else None
    rows = await repository.list_refunds(session, status=status, after=after, limit=limit + 1)
    items = [RefundView.of(row) for row in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    next_cursor = encode_time_id_cursor(last.created_at, last.id) if last else None
    return Page[RefundView](items=items, next_cursor=next_cursor)
