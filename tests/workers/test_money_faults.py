"""The money path under every fault of issue 16, end to end: the HTTP API, a real Celery
worker, the payment sandbox and the SMTP sink. Each scenario ends with the ledger
balanced against the sandbox's own records and exactly the emails the final state calls
for (counted once every email event was processed, so a duplicate would show).

Reconciliation is sent by name (as beat sends it) with a short grace period; faults come
from the sandbox (latency, "busy", "answer late after applying") and from SIGKILL.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from fastapi import FastAPI
from redis import Redis as SyncRedis
from sqlalchemy import select

from tests.support.apps import client_of, running
from tests.support.booking import Booking
from tests.support.money import emails_sent, ledger_mismatches, subjects
from tests.support.redis_server import redis_server
from tests.support.sandboxes import PaymentSandbox, SmtpSink, free_port, run_payment_sandbox
from tests.support.workers import CeleryProcess, eventually, run_worker
from tripbook.core.outbox import OutboxEvent
from tripbook.core.relay import create_client
from tripbook.payments.models import Payment
from tripbook.settings import Settings

pytestmark = pytest.mark.slow

GATEWAY_TIMEOUT_S = 0.5
# Reconciliation looks at what nobody touched for this long (above 2 x the timeout).
RECONCILE_AFTER_S = 1.2
FAULT_ENV = {
    "TRIPBOOK_PAYMENT_GATEWAY_TIMEOUT_S": str(GATEWAY_TIMEOUT_S),
    "TRIPBOOK_PAYMENT_RECONCILE_AFTER_S": str(RECONCILE_AFTER_S),
    "TRIPBOOK_PAYMENT_MAX_RETRIES": "1",  # two attempts, then reconciliation's turn
}


@pytest.fixture
def gateway(jobs_log_dir: Path) -> Iterator[PaymentSandbox]:
    """A sandbox of the test's own, so its faults touch nobody else's payments."""
    with run_payment_sandbox(jobs_log_dir, timeout_delay_s=5) as sandbox:
        yield sandbox


@pytest.fixture
def faulty_worker(
    gateway: PaymentSandbox, jobs_log_dir: Path, worker_env: dict[str, str]
) -> Iterator[CeleryProcess]:
    env = {**worker_env, **FAULT_ENV, "TRIPBOOK_PAYMENT_GATEWAY_URL": gateway.url}
    with run_worker(jobs_log_dir, env=env, name="money") as process:
        yield process


def ran(worker: CeleryProcess, task_id: str) -> bool:
    return any(
        line.get("event") == "task_finished" and line.get("task_id") == task_id
        for line in worker.log_lines()
    )


async def reconcile_until(
    broker: Celery, worker: CeleryProcess, reached: Any, *, what: str, timeout_s: float = 30
) -> Any:
    """Send ``payments.reconcile`` (as beat does), wait for the run, until ``reached()``."""
    deadline = time.monotonic() + timeout_s
    while True:
        sent = broker.send_task("payments.reconcile", queue="payments")
        await eventually(partial(ran, worker, sent.id), what="a reconciliation run")
        result = await reached()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} not reached within {timeout_s}s"


async def event_id_of(booking: Booking, task: str, key: str, value: uuid.UUID) -> str:
    """The id of the outbox event (so of its task) whose payload names ``value``."""
    async with booking.sessionmaker() as session:
        [event_id] = await session.scalars(
            select(OutboxEvent.id).where(
                OutboxEvent.task == task, OutboxEvent.payload[key].astext == str(value)
            )
        )
    return str(event_id)


def handed_over(worker: CeleryProcess, task_id: str) -> bool:
    """The worker spent its retries on this task (not another test's leftover) and left
    the payment to reconciliation."""
    return any(
        line.get("event") == "payment_outcome_unknown" and line.get("task_id") == task_id
        for line in worker.log_lines()
    )


async def charge_of(booking: Booking, reservation_id: str) -> Payment:
    [charge] = await booking.payments(reservation_id)
    return charge


async def test_charged_but_every_attempt_timed_out(
    faulty_worker: CeleryProcess,
    gateway: PaymentSandbox,
    booking: Booking,
    broker: Celery,
    smtp_sink: SmtpSink,
) -> None:
    """Issue 16 #1: the gateway applies the charge but answers after the client gave up,
    on the last retry too. Then it is unknown (never failed), and reconciliation confirms."""
    account, departure = await booking.customer_and_departure(seats=4)
    held = await booking.hold(account, departure.id, seats=2)
    gateway.set_latency(3 * GATEWAY_TIMEOUT_S)

    await booking.pay(account, held["id"], "tok_approve")
    charge = await charge_of(booking, held["id"])
    settle = await event_id_of(booking, "payments.settle", "payment_id", charge.id)
    await eventually(lambda: handed_over(faulty_worker, settle), what="the hand-over")
    await eventually(
        lambda: gateway.stats()["charges"].get(charge.idempotency_key, {}).get("applied") == 1,
        what="the charge applied at the gateway",
    )

    charge = await charge_of(booking, held["id"])
    assert (charge.status, charge.attempts) == ("unknown", 2)
    assert (await booking.reservation(held["id"])).status == "payment_pending"
    assert await booking.factories.seats_available(departure.id) == 2  # still held

    gateway.set_latency(0)

    async def confirmed() -> bool:
        return (await booking.reservation(held["id"])).status == "confirmed"

    await reconcile_until(broker, faulty_worker, confirmed, what="confirmation")
    charge = await charge_of(booking, held["id"])
    assert (charge.status, charge.payment_token) == ("succeeded", None)
    assert gateway.stats()["charges"][charge.idempotency_key]["applied"] == 1
    assert await ledger_mismatches(booking.sessionmaker, gateway, [held["id"]]) == []
    assert await emails_sent(
        booking.sessionmaker, smtp_sink, to=account.email, reservation_id=held["id"]
    ) == subjects(held["id"], "reservation_held", "reservation_confirmed")


async def test_worker_killed_after_the_gateway_approved(
    gateway: PaymentSandbox,
    booking: Booking,
    broker: Celery,
    smtp_sink: SmtpSink,
    jobs_log_dir: Path,
    worker_env: dict[str, str],
) -> None:
    """Issue 16 #2: the worker dies between the gateway's approval and the database
    update. Nobody redelivers its message here: reconciliation alone must finish it."""
    env = {**worker_env, **FAULT_ENV, "TRIPBOOK_PAYMENT_GATEWAY_URL": gateway.url}
    env["TRIPBOOK_PAYMENT_GATEWAY_TIMEOUT_S"] = "10"  # the worker waits for the late answer
    env["TRIPBOOK_PAYMENT_RECONCILE_AFTER_S"] = "21"
    account, departure = await booking.customer_and_departure()
    held = await booking.hold(account, departure.id)

    with run_worker(jobs_log_dir, env=env, name="doomed") as doomed:
        # Applied at once; the answer comes 8 s later, long after the kill.
        await booking.pay(account, held["id"], "tok_hang_after_apply_8000")
        charge = await charge_of(booking, held["id"])
        await eventually(
            lambda: gateway.stats()["charges"].get(charge.idempotency_key, {}).get("applied") == 1,
            what="the charge applied at the gateway",
        )
        doomed.kill()

    charge = await charge_of(booking, held["id"])
    assert (charge.status, charge.attempts) == ("unknown", 1)
    assert (await booking.reservation(held["id"])).status == "payment_pending"

    reconciling = {**env, "TRIPBOOK_PAYMENT_RECONCILE_AFTER_S": str(RECONCILE_AFTER_S)}
    reconciling["TRIPBOOK_PAYMENT_GATEWAY_TIMEOUT_S"] = str(GATEWAY_TIMEOUT_S)
    with run_worker(jobs_log_dir, env=reconciling, name="reconciler") as reconciler:

        async def confirmed() -> bool:
            return (await booking.reservation(held["id"])).status == "confirmed"

        await reconcile_until(broker, reconciler, confirmed, what="confirmation")
        emails = await emails_sent(
            booking.sessionmaker, smtp_sink, to=account.email, reservation_id=held["id"]
        )

    assert emails == subjects(held["id"], "reservation_held", "reservation_confirmed")
    charge = await charge_of(booking, held["id"])
    assert (charge.status, charge.attempts) == ("succeeded", 2)
    assert gateway.stats()["charges"][charge.idempotency_key]["applied"] == 1
    assert await ledger_mismatches(booking.sessionmaker, gateway, [held["id"]]) == []


async def test_refund_timed_out_while_applied(
    faulty_worker: CeleryProcess,
    gateway: PaymentSandbox,
    booking: Booking,
    broker: Celery,
    smtp_sink: SmtpSink,
) -> None:
    """Issue 16 #3: a refund the gateway applies but answers too late is unknown, never
    failed, and reconciliation records it applied, once."""
    account, departure = await booking.customer_and_departure()
    held = await booking.hold(account, departure.id)
    await booking.pay(account, held["id"], "tok_approve")
    await booking.wait_for_status(held["id"], "confirmed")
    gateway.set_latency(3 * GATEWAY_TIMEOUT_S)

    cancelled = await booking.client.post(
        f"/v1/reservations/{held['id']}/cancel", headers=account.headers
    )
    assert cancelled.status_code == 200
    [refund] = await booking.payments(held["id"], kind="refund")
    refunding = await event_id_of(booking, "payments.refund", "refund_id", refund.id)
    await eventually(lambda: handed_over(faulty_worker, refunding), what="the hand-over")
    await eventually(
        lambda: gateway.stats()["refunds"].get(refund.idempotency_key, {}).get("applied") == 1,
        what="the refund applied at the gateway",
    )
    [refund] = await booking.payments(held["id"], kind="refund")
    assert (refund.status, refund.attempts) == ("unknown", 2)
    gateway.set_latency(0)

    async def refunded() -> bool:
        [refund] = await booking.payments(held["id"], kind="refund")
        return refund.status == "succeeded"

    await reconcile_until(broker, faulty_worker, refunded, what="the refund")
    assert gateway.stats()["refunds"][refund.idempotency_key]["applied"] == 1
    assert await ledger_mismatches(booking.sessionmaker, gateway, [held["id"]]) == []
    response = await booking.client.get(
        f"/v1/reservations/{held['id']}/payment", headers=account.headers
    )
    [shown] = response.json()["refunds"]
    assert (shown["status"], shown["amount"]) == ("succeeded", {"amount": 2500, "currency": "EUR"})
    assert await emails_sent(
        booking.sessionmaker, smtp_sink, to=account.email, reservation_id=held["id"]
    ) == subjects(
        held["id"],
        "reservation_held",
        "reservation_confirmed",
        "reservation_cancelled",
        "refund_issued",
    )


async def test_a_gateway_409_is_not_a_decline(
    faulty_worker: CeleryProcess, gateway: PaymentSandbox, booking: Booking, smtp_sink: SmtpSink
) -> None:
    """Issue 16 #4: "this key is still being processed" is retried, never a decline."""
    account, departure = await booking.customer_and_departure()
    held = await booking.hold(account, departure.id)

    await booking.pay(account, held["id"], "tok_busy_1_then_approve")

    await booking.wait_for_status(held["id"], "confirmed")
    charge = await charge_of(booking, held["id"])
    assert (charge.status, charge.attempts) == ("succeeded", 2)
    assert gateway.stats()["charges"][charge.idempotency_key] == {"applied": 1, "attempts": 2}
    assert await ledger_mismatches(booking.sessionmaker, gateway, [held["id"]]) == []
    assert await emails_sent(
        booking.sessionmaker, smtp_sink, to=account.email, reservation_id=held["id"]
    ) == subjects(held["id"], "reservation_held", "reservation_confirmed")


async def test_paying_again_after_a_decline(
    faulty_worker: CeleryProcess, gateway: PaymentSandbox, booking: Booking, smtp_sink: SmtpSink
) -> None:
    """Issue 16 #6: a declined card is not the end; the seats are taken back."""
    account, departure = await booking.customer_and_departure(seats=3)
    held = await booking.hold(account, departure.id, seats=3)
    await booking.pay(account, held["id"], "tok_decline")
    await booking.wait_for_status(held["id"], "payment_failed")
    assert await booking.factories.seats_available(departure.id) == 3

    await booking.pay(account, held["id"], "tok_approve")

    await booking.wait_for_status(held["id"], "confirmed")
    assert await booking.factories.seats_available(departure.id) == 0
    declined, approved = await booking.payments(held["id"])
    stats = gateway.stats()["charges"]
    assert stats[declined.idempotency_key] == {"applied": 0, "attempts": 1}
    assert stats[approved.idempotency_key] == {"applied": 1, "attempts": 1}
    assert await ledger_mismatches(booking.sessionmaker, gateway, [held["id"]]) == []
    assert await emails_sent(
        booking.sessionmaker, smtp_sink, to=account.email, reservation_id=held["id"]
    ) == subjects(held["id"], "reservation_held", "payment_failed", "reservation_confirmed")


async def test_cancelling_after_the_deadline(
    faulty_worker: CeleryProcess, gateway: PaymentSandbox, booking: Booking, smtp_sink: SmtpSink
) -> None:
    """Issue 16 #5: no full refund for a customer once the trip is about to leave (or
    gone); ops still can, and then the refund is applied exactly once."""
    account = await booking.factories.account()
    departure = await booking.factories.departure(
        seats=2,
        price=2500,
        departs_in=timedelta(hours=23),  # the deadline is 24 h
    )
    held = await booking.hold(account, departure.id)
    await booking.pay(account, held["id"], "tok_approve")
    await booking.wait_for_status(held["id"], "confirmed")

    late = await booking.client.post(
        f"/v1/reservations/{held['id']}/cancel", headers=account.headers
    )
    assert (late.status_code, late.json()["code"]) == (409, "CANCELLATION_CLOSED")
    assert gateway.refunds() == []
    ops = await booking.factories.account("ops")
    by_ops = await booking.client.post(f"/v1/reservations/{held['id']}/cancel", headers=ops.headers)
    assert by_ops.status_code == 200

    async def refunded() -> bool:
        refunds = await booking.payments(held["id"], kind="refund")
        return bool(refunds) and refunds[0].status == "succeeded"

    await eventually(refunded, what="the refund")
    [refund] = await booking.payments(held["id"], kind="refund")
    assert gateway.stats()["refunds"][refund.idempotency_key] == {"applied": 1, "attempts": 1}
    assert await ledger_mismatches(booking.sessionmaker, gateway, [held["id"]]) == []
    assert await emails_sent(
        booking.sessionmaker, smtp_sink, to=account.email, reservation_id=held["id"]
    ) == subjects(
        held["id"],
        "reservation_held",
        "reservation_confirmed",
        "reservation_cancelled",
        "refund_issued",
    )


async def test_a_refused_refund_waits_for_ops(
    faulty_worker: CeleryProcess, gateway: PaymentSandbox, booking: Booking
) -> None:
    """A refund the gateway definitely refuses is refund_failed (not only logged): listed
    for ops, and sent again by them under a new key."""
    account, departure = await booking.customer_and_departure()
    held = await booking.hold(account, departure.id)
    await booking.pay(account, held["id"], "tok_refund_refuse_1")
    await booking.wait_for_status(held["id"], "confirmed")
    await booking.client.post(f"/v1/reservations/{held['id']}/cancel", headers=account.headers)

    async def refused() -> Payment | None:
        refunds = await booking.payments(held["id"], kind="refund")
        return refunds[0] if refunds and refunds[0].status == "refund_failed" else None

    refund = await eventually(refused, what="the refusal")
    ops = await booking.factories.account("ops")
    listed = await booking.client.get(
        "/v1/ops/refunds", params={"status": "refund_failed", "limit": 100}, headers=ops.headers
    )
    assert str(refund.id) in [item["id"] for item in listed.json()["items"]]
    assert await ledger_mismatches(booking.sessionmaker, gateway, [held["id"]]) == [
        f"charge {(await charge_of(booking, held['id'])).idempotency_key} was applied, "
        f"{held['id']} is cancelled and nothing was refunded"
    ]

    retried = await booking.client.post(f"/v1/ops/refunds/{refund.id}/retry", headers=ops.headers)
    assert retried.status_code == 202

    async def refunded() -> Payment | None:
        [refund] = await booking.payments(held["id"], kind="refund")
        return refund if refund.status == "succeeded" else None

    refund = await eventually(refunded, what="the retried refund")
    stats = gateway.stats()["refunds"]
    charge = await charge_of(booking, held["id"])
    assert stats[f"refund-{charge.id}"] == {"applied": 0, "attempts": 1}
    assert stats[refund.idempotency_key] == {"applied": 1, "attempts": 1}
    assert await ledger_mismatches(booking.sessionmaker, gateway, [held["id"]]) == []


@pytest.fixture
async def private_broker(settings: Settings) -> AsyncIterator[tuple[FastAPI, SyncRedis, str]]:
    """The API publishing to a Redis of the test's own, which the test can wipe."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/1"
    with redis_server(port) as redis:
        async with running(settings, broker_url=url) as app:
            yield app, redis, url


async def test_the_broker_lost_the_messages(
    private_broker: tuple[FastAPI, SyncRedis, str],
    gateway: PaymentSandbox,
    booking: Booking,
    settings: Settings,
    smtp_sink: SmtpSink,
    jobs_log_dir: Path,
    worker_env: dict[str, str],
) -> None:
    """Issue 16 #7: Redis accepted the tasks, then lost them (FLUSHALL, as a restart
    without persistence would). The sweep publishes again every event no consumer recorded
    as processed; consumers are idempotent, so nothing happens twice."""
    app, redis, url = private_broker
    async with client_of(app) as client:
        api = Booking(client, booking.factories, booking.sessionmaker)
        account, departure = await booking.customer_and_departure()
        held = await api.hold(account, departure.id)
        await api.pay(account, held["id"], "tok_approve")

        async def published() -> list[OutboxEvent] | None:
            events = await booking.events(held["id"])
            return events if all(event.published_at for event in events) else None

        events = await eventually(published, what="both events published")
    prefix = settings.redis_key_prefix
    waiting = redis.llen(f"{prefix}email") + redis.llen(f"{prefix}payments")
    assert waiting == 2, "the hold's email and the settlement wait in the broker"
    redis.flushall()
    assert redis.dbsize() == 0

    env = {
        **worker_env,
        "TRIPBOOK_PAYMENT_GATEWAY_URL": gateway.url,
        "TRIPBOOK_BROKER_URL": url,
        "TRIPBOOK_OUTBOX_REDELIVER_AFTER_S": "0.5",
    }
    sweeper = create_client(settings.model_copy(update={"broker_url": url}))
    try:
        with run_worker(jobs_log_dir, env=env, name="after-wipe") as worker:

            async def confirmed() -> bool:
                sent = sweeper.send_task("maintenance.sweep_outbox", queue="maintenance")
                await eventually(lambda: ran(worker, sent.id), what="a sweep")
                return (await booking.reservation(held["id"])).status == "confirmed"

            await eventually(confirmed, timeout_s=30, what="confirmation after the wipe")
            emails = await emails_sent(
                booking.sessionmaker, smtp_sink, to=account.email, reservation_id=held["id"]
            )
    finally:
        sweeper.close()

    assert emails == subjects(held["id"], "reservation_held", "reservation_confirmed")
    for event in await booking.events(held["id"]):
        if event.id in {e.id for e in events}:  # the hold's email and the settlement
            assert event.publish_attempts == 2, event.task
    charge = await charge_of(booking, held["id"])
    assert gateway.stats()["charges"][charge.idempotency_key] == {"applied": 1, "attempts": 1}
    assert await ledger_mismatches(booking.sessionmaker, gateway, [held["id"]]) == []
