"""``payments.settle`` and ``payments.refund``: talk to the gateway outside any transaction.

Both follow the same shape (see ``tripbook.payments.service``): record the attempt and
commit, call the gateway with the payment's idempotency key, then apply the answer in one
transaction that also claims the outbox event. A retryable failure is retried with
backoff and jitter; once the retries are spent it counts as a decline.
"""

from __future__ import annotations

import uuid
from typing import Any

from asgi_correlation_id import correlation_id
from celery import Task

from tripbook.core.db import after_commit, unit_of_work
from tripbook.core.logging import get_logger
from tripbook.payments import service
from tripbook.payments.gateway import GatewayResult
from tripbook.payments.service import Settlement
from tripbook.trips import cache
from workers import runtime
from workers.app import app, settings
from workers.retry import is_final_attempt, retry_later, run_or_retry

log = get_logger(__name__)


@app.task(name="payments.settle", bind=True, max_retries=settings.payment_max_retries)
def settle(self: Task[Any, Any], event_id: str, payload: dict[str, Any]) -> str:
    settlement = run_or_retry(
        self,
        settle_payment(
            event_id=uuid.UUID(event_id),
            payment_id=uuid.UUID(payload["payment_id"]),
            final=is_final_attempt(self),
        ),
    )
    if settlement is Settlement.RETRY:
        raise retry_later(self)
    return settlement.value


async def settle_payment(*, event_id: uuid.UUID, payment_id: uuid.UUID, final: bool) -> Settlement:
    rt = runtime.current()
    request_id = correlation_id.get()
    async with unit_of_work(rt.sessionmaker) as session:
        attempt = await service.start_charge(session, event_id=event_id, payment_id=payment_id)
    if attempt is None:
        log.info("settlement_skipped", payment_id=str(payment_id))
        return Settlement.SKIPPED

    result = await rt.gateway.charge(
        amount=attempt.amount,
        currency=attempt.currency,
        token=attempt.token,
        idempotency_key=attempt.idempotency_key,
        request_id=request_id,
    )

    async with unit_of_work(rt.sessionmaker) as session:
        outcome = await service.apply_charge(
            session,
            event_id=event_id,
            payment_id=payment_id,
            result=result,
            final=final,
            request_id=request_id,
        )
        if outcome.released is not None:
            trip_id = outcome.released.trip_id
            after_commit(session, lambda: cache.invalidate(rt.redis, rt.settings, trip_id))
    log.info(
        "settlement",
        payment_id=str(payment_id),
        attempt=attempt.attempt,
        result=type(result).__name__,
        settlement=outcome.settlement.value,
    )
    return outcome.settlement


@app.task(name="payments.refund", bind=True, max_retries=settings.payment_max_retries)
def refund(self: Task[Any, Any], event_id: str, payload: dict[str, Any]) -> str:
    payment_id = payload.get("payment_id")
    retry = run_or_retry(
        self,
        refund_reservation(
            event_id=uuid.UUID(event_id),
            reservation_id=uuid.UUID(payload["reservation_id"]),
            payment_id=uuid.UUID(payment_id) if payment_id else None,
            final=is_final_attempt(self),
        ),
    )
    if retry:
        raise retry_later(self)
    return "refunded"


async def refund_reservation(
    *, event_id: uuid.UUID, reservation_id: uuid.UUID, payment_id: uuid.UUID | None, final: bool
) -> bool:
    rt = runtime.current()
    request_id = correlation_id.get()
    async with unit_of_work(rt.sessionmaker) as session:
        attempts = await service.start_refunds(
            session, reservation_id=reservation_id, payment_id=payment_id
        )
    results: dict[uuid.UUID, GatewayResult] = {}
    for attempt in attempts:
        results[attempt.refund_id] = await rt.gateway.refund(
            charge_reference=attempt.charge_reference,
            amount=attempt.amount,
            idempotency_key=attempt.idempotency_key,
            request_id=request_id,
        )
    async with unit_of_work(rt.sessionmaker) as session:
        retry = await service.apply_refunds(
            session, event_id=event_id, results=results, final=final
        )
    log.info("refunds", reservation_id=str(reservation_id), refunds=len(results), retry=retry)
    return retry
