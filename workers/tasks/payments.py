"""``payments.settle``, ``payments.refund`` and ``payments.reconcile``.

Settle and refund run one attempt per delivery (``tripbook.payments.reconciliation``): the
attempt is recorded and committed, the gateway is called with the payment's idempotency
key outside any transaction, and its answer applied in a second transaction. While the
answer is not definite the task retries with backoff and jitter; once its retries are
spent the payment stays ``unknown`` and the event is handed to reconciliation (beat's
``payments.reconcile``), never counted as a decline.
"""

from __future__ import annotations

import uuid
from typing import Any

from asgi_correlation_id import correlation_id
from celery import Task

from tripbook.core.db import unit_of_work
from tripbook.core.logging import get_logger
from tripbook.core.outbox import claim_processing
from tripbook.payments.reconciliation import attempt_charge, attempt_refund, reconcile
from tripbook.payments.refunds import REFUND_TASK, RefundOutcome
from tripbook.payments.service import SETTLE_TASK
from tripbook.payments.settlement import Settlement
from tripbook.trips import cache
from workers import runtime
from workers.app import app, settings
from workers.events import is_unknown_event
from workers.retry import is_final_attempt, retry_later, run_or_retry

log = get_logger(__name__)


@app.task(name=SETTLE_TASK, bind=True, max_retries=settings.payment_max_retries)
def settle(self: Task[Any, Any], event_id: str, payload: dict[str, Any]) -> str:
    if is_unknown_event(self, event_id):
        return "unknown_event"
    settlement = run_or_retry(
        self, settle_payment(uuid.UUID(payload["payment_id"]), uuid.UUID(event_id), self)
    )
    return settlement.value


async def settle_payment(
    payment_id: uuid.UUID, event_id: uuid.UUID, task: Task[Any, Any]
) -> Settlement:
    rt = runtime.current()
    outcome = await attempt_charge(
        rt.payments, payment_id=payment_id, request_id=correlation_id.get()
    )
    if outcome.released is not None:
        await cache.invalidate(rt.redis, rt.settings, outcome.released.trip_id)
    await _done_unless_retrying(task, event_id, SETTLE_TASK, outcome.settlement is Settlement.RETRY)
    return outcome.settlement


@app.task(name=REFUND_TASK, bind=True, max_retries=settings.payment_max_retries)
def refund(self: Task[Any, Any], event_id: str, payload: dict[str, Any]) -> str:
    if is_unknown_event(self, event_id):
        return "unknown_event"
    outcome = run_or_retry(
        self, refund_payment(uuid.UUID(payload["refund_id"]), uuid.UUID(event_id), self)
    )
    return outcome.value


async def refund_payment(
    refund_id: uuid.UUID, event_id: uuid.UUID, task: Task[Any, Any]
) -> RefundOutcome:
    rt = runtime.current()
    outcome = await attempt_refund(
        rt.payments, refund_id=refund_id, request_id=correlation_id.get()
    )
    await _done_unless_retrying(task, event_id, REFUND_TASK, outcome is RefundOutcome.RETRY)
    return outcome


async def _done_unless_retrying(
    task: Task[Any, Any], event_id: uuid.UUID, consumer: str, undecided: bool
) -> None:
    """Record the event as processed, unless the answer is still open and a retry is left
    (then schedule it). Spent retries hand the payment to reconciliation."""
    if undecided and not is_final_attempt(task):
        raise retry_later(task)
    if undecided:
        log.warning("payment_outcome_unknown", handed_to="reconciliation")
    async with unit_of_work(runtime.current().sessionmaker) as session:
        await claim_processing(session, event_id, consumer)


@app.task(name="payments.reconcile")
def reconcile_payments() -> dict[str, dict[str, int]]:
    rt = runtime.current()

    async def invalidate(trip_id: int) -> None:
        await cache.invalidate(rt.redis, rt.settings, trip_id)

    report = runtime.run(
        reconcile(rt.payments, request_id=correlation_id.get(), on_seats_changed=invalidate)
    )
    return {"charges": report.charges, "refunds": report.refunds}
