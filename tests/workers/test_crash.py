"""A worker killed (SIGKILL) in the middle of each kind of task loses nothing and does
nothing twice: settlement, refund, email and the expiry sweep. SIGTERM lets a task finish.

Each test kills the whole worker while its task is provably under way (at the gateway, in
the SMTP conversation, waiting on a row lock), then starts a successor that reclaims the
unacknowledged message and runs it to the end.
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from functools import partial
from pathlib import Path

import pytest
from celery import Celery
from sqlalchemy import select, text

from tests import environment
from tests.support.booking import Booking, expire_now
from tests.support.claims_locks import backend_blocked_by, backend_pid
from tests.support.sandboxes import PaymentSandbox, SmtpSink
from tests.support.seats import DepartureSeats, departure_seats_at
from tests.support.workers import eventually, finished, run_worker, wait_for_messages
from tripbook.core.outbox import ProcessedEvent
from tripbook.trips.models import Departure

pytestmark = pytest.mark.slow

# The replacement worker reclaims messages a dead worker left unacknowledged once they
# are older than this (production: an hour, above every countdown).
RESTORE_ENV = {
    "TRIPBOOK_BROKER_VISIBILITY_TIMEOUT_S": "2",
    "TRIPBOOK_BROKER_RESTORE_INTERVAL_S": "0.5",
    # While the dead worker's call is still being handled, the gateway answers 409 "key
    # in use": enough retries to outlast it, so the successor itself finishes the job.
    "TRIPBOOK_PAYMENT_MAX_RETRIES": "30",
}


def charge_statuses(sandbox: PaymentSandbox, idempotency_key: str) -> list[str]:
    """What the processor shows under the key: ``["processing"]`` while a call is in flight."""
    return [charge["status"] for charge in sandbox.charges(idempotency_key)]


async def charge_in_flight(booking: Booking, sandbox: PaymentSandbox, reservation_id: str) -> str:
    """Wait until the settlement's charge is being processed at the gateway; its key."""
    [payment] = await booking.payments(reservation_id)
    key = payment.idempotency_key
    await eventually(
        lambda: charge_statuses(sandbox, key) == ["processing"],
        what="the charge to be in flight at the gateway",
    )
    return key


async def test_settlement_survives_a_killed_worker(
    booking: Booking,
    payment_sandbox: PaymentSandbox,
    jobs_log_dir: Path,
    worker_env: dict[str, str],
) -> None:
    account, departure = await booking.customer_and_departure()
    held = await booking.hold(account, departure.id)

    with run_worker(jobs_log_dir, env=worker_env, name="doomed") as doomed:
        await booking.pay(account, held["id"], "tok_slow_3000")
        key = await charge_in_flight(booking, payment_sandbox, held["id"])
        doomed.kill()
        assert doomed.popen.returncode == -9
        # Processing before the kill and still after it: the worker died mid-call.
        assert charge_statuses(payment_sandbox, key) == ["processing"]

    reservation = await booking.reservation(held["id"])
    assert reservation.status == "payment_pending"
    [payment] = await booking.payments(held["id"])
    assert (payment.status, payment.attempts) == ("unknown", 1)  # sent; outcome not known

    with run_worker(jobs_log_dir, env={**worker_env, **RESTORE_ENV}, name="successor"):
        await booking.wait_for_status(held["id"], "confirmed", timeout_s=30)

    [payment] = await booking.payments(held["id"])
    assert payment.status == "succeeded"
    assert payment.attempts >= 2
    # Every call reached the gateway (those during the dead one's were told "in use").
    charge = payment_sandbox.stats()["charges"][payment.idempotency_key]
    assert charge == {"applied": 1, "attempts": payment.attempts}
    assert charge_statuses(payment_sandbox, key) == ["succeeded"]


async def test_sigterm_during_a_settlement_lets_it_finish(
    booking: Booking,
    payment_sandbox: PaymentSandbox,
    jobs_log_dir: Path,
    worker_env: dict[str, str],
) -> None:
    """Warm shutdown (what Kubernetes sends): no new tasks, the running one completes."""
    account, departure = await booking.customer_and_departure()
    held = await booking.hold(account, departure.id)

    with run_worker(jobs_log_dir, env=worker_env, name="terminated") as terminated:
        await booking.pay(account, held["id"], "tok_slow_3000")
        key = await charge_in_flight(booking, payment_sandbox, held["id"])
        terminated.popen.send_signal(signal.SIGTERM)
        # Processing before the signal and still after it: SIGTERM landed mid-charge.
        assert charge_statuses(payment_sandbox, key) == ["processing"]
        exit_code = await asyncio.to_thread(terminated.popen.wait, 30)

    assert exit_code == 0
    reservation = await booking.reservation(held["id"])
    assert reservation.status == "confirmed"  # finished before the worker exited
    [payment] = await booking.payments(held["id"])
    assert (payment.status, payment.attempts) == ("succeeded", 1)
    assert payment_sandbox.stats()["charges"][key] == {"applied": 1, "attempts": 1}
    [charge] = payment_sandbox.charges(key)
    assert (charge["status"], charge["id"]) == ("succeeded", payment.gateway_reference)


async def test_refund_survives_a_killed_worker(
    booking: Booking,
    payment_sandbox: PaymentSandbox,
    jobs_log_dir: Path,
    worker_env: dict[str, str],
) -> None:
    account, departure = await booking.customer_and_departure(seats=4)
    held = await booking.hold(account, departure.id, seats=2)

    with run_worker(jobs_log_dir, env=worker_env, name="doomed") as doomed:
        # Charged at once; each refund of it spends 3 s at the gateway.
        await booking.pay(account, held["id"], "tok_refund_slow_3000")
        await booking.wait_for_status(held["id"], "confirmed")
        [charge] = await booking.payments(held["id"])
        refund_key = f"refund-{charge.id}"
        cancelled = await booking.client.post(
            f"/v1/reservations/{held['id']}/cancel", headers=account.headers
        )
        assert cancelled.status_code == 200

        def refund_statuses() -> list[str]:
            return [refund["status"] for refund in payment_sandbox.refunds(refund_key)]

        await eventually(
            lambda: refund_statuses() == ["processing"], what="the refund to be at the gateway"
        )
        doomed.kill()
        assert doomed.popen.returncode == -9
        assert refund_statuses() == ["processing"]  # the worker died mid-call

    [refund] = await booking.payments(held["id"], kind="refund")
    assert (refund.status, refund.attempts) == ("unknown", 1)  # sent; outcome not known

    with run_worker(jobs_log_dir, env={**worker_env, **RESTORE_ENV}, name="successor"):

        async def refunded() -> bool:
            [refund] = await booking.payments(held["id"], kind="refund")
            return refund.status == "succeeded"

        await eventually(refunded, timeout_s=30, what="the refund to succeed")

    [refund] = await booking.payments(held["id"], kind="refund")
    assert (refund.amount, refund.error) == (5000, None)
    assert refund.attempts >= 2
    assert payment_sandbox.stats()["refunds"][refund_key] == {
        "applied": 1,
        "attempts": refund.attempts,
    }
    assert (await booking.reservation(held["id"])).status == "cancelled"
    assert await booking.factories.seats_available(departure.id) == 4


async def email_claimed(booking: Booking, event_id: uuid.UUID) -> bool:
    async with booking.sessionmaker() as session:
        claim = await session.get(ProcessedEvent, (event_id, "email.send"))
        return claim is not None


async def test_email_survives_a_killed_worker(
    booking: Booking,
    smtp_sink: SmtpSink,
    jobs_log_dir: Path,
    worker_env: dict[str, str],
) -> None:
    account, departure = await booking.customer_and_departure()
    smtp_sink.hold(account.email)  # the sink takes the message but withholds its "250"
    try:
        with run_worker(jobs_log_dir, env=worker_env, name="doomed") as doomed:
            held = await booking.hold(account, departure.id)  # "Seats held" email
            await eventually(
                lambda: smtp_sink.waiting() == [account.email], what="the email to be mid-send"
            )
            doomed.kill()
        # The sender vanished before "250": nothing was delivered.
        await eventually(lambda: smtp_sink.waiting() == [], what="the sink to see it gone")
    finally:
        smtp_sink.release()
    assert smtp_sink.messages(to=account.email) == []
    [event] = await booking.events(held["id"])
    assert event.task == "email.send"
    assert not await email_claimed(booking, event.id)  # the claim died with the worker

    with run_worker(jobs_log_dir, env={**worker_env, **RESTORE_ENV}, name="successor") as successor:
        await eventually(partial(finished, [successor], event.id), what="the email task")
        [message] = await wait_for_messages(
            smtp_sink,
            to=account.email,
            count=1,
            timeout_s=30,
            exact_for=(booking.sessionmaker, held["id"]),
        )

    assert message["subject"] == f"Seats held: reservation {held['id']}"
    assert message["message_id"].startswith(f"<{event.id}@")
    assert await email_claimed(booking, event.id)


async def backend_gone(booking: Booking, pid: int) -> bool:
    async with booking.sessionmaker() as session:
        result = await session.execute(
            text("SELECT 1 FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
        )
        return result.first() is None


async def seats_of(departure_id: int) -> DepartureSeats:
    return await departure_seats_at(environment.DATABASE_DSN, departure_id)


async def test_expiry_sweep_survives_a_killed_worker(
    booking: Booking,
    broker: Celery,
    jobs_log_dir: Path,
    worker_env: dict[str, str],
) -> None:
    account, departure = await booking.customer_and_departure(seats=6)
    due = await booking.hold(account, departure.id, seats=2)
    kept = await booking.hold(account, departure.id, seats=3)
    await expire_now(booking, due["id"])
    assert await booking.factories.seats_available(departure.id) == 1
    # Long enough lock and statement timeouts that the sweep waits for us, not gives up.
    patient = {
        **worker_env,
        "TRIPBOOK_DB_LOCK_TIMEOUT_MS": "30000",
        "TRIPBOOK_DB_STATEMENT_TIMEOUT_MS": "30000",
    }

    async with booking.sessionmaker() as blocker:
        # Hold the departure's row lock: the sweep marks the hold expired, then waits here.
        await blocker.execute(
            select(Departure.id).where(Departure.id == departure.id).with_for_update()
        )
        blocker_pid = await backend_pid(blocker)
        with run_worker(jobs_log_dir, env=patient, name="doomed") as doomed:
            sweep = broker.send_task("maintenance.expire_holds", queue="maintenance")
            sweeper_pid = await eventually(
                partial(backend_blocked_by, booking.sessionmaker, blocker_pid),
                what="the sweep mid-run",
            )
            doomed.kill()
        await blocker.rollback()

    # The dead worker's transaction goes with its connection: nothing it did stands.
    await eventually(partial(backend_gone, booking, sweeper_pid), what="its backend to end")
    assert (await booking.reservation(due["id"])).status == "held"
    assert await booking.factories.seats_available(departure.id) == 1

    with run_worker(jobs_log_dir, env={**worker_env, **RESTORE_ENV}, name="successor") as successor:
        await booking.wait_for_status(due["id"], "expired", timeout_s=30)
        await eventually(partial(finished, [successor], sweep.id), what="the sweep to finish")

    assert (await booking.reservation(kept["id"])).status == "held"
    seats = await seats_of(departure.id)
    assert (seats.seats_available, seats.seats_held) == (3, 3)  # released once
    assert seats.balanced, seats.as_dict()  # DESIGN §4
