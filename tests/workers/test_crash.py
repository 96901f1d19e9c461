"""A worker killed (SIGKILL) or terminated (SIGTERM) mid-settlement loses nothing."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.support.sandboxes import PaymentSandbox
from tests.support.workers import eventually, run_worker
from tests.workers.conftest import Booking

pytestmark = pytest.mark.slow

# The replacement worker reclaims messages a dead worker left unacknowledged once they
# are older than this (production: an hour, above every countdown).
RESTORE_ENV = {
    "TRIPBOOK_BROKER_VISIBILITY_TIMEOUT_S": "2",
    "TRIPBOOK_BROKER_RESTORE_INTERVAL_S": "0.5",
}


async def charge_reaches_gateway(
    booking: Booking, sandbox: PaymentSandbox, reservation_id: str
) -> None:
    """Wait until the settlement is under way: its first charge attempt hit the gateway."""
    [payment] = await booking.payments(reservation_id)

    def charging() -> bool:
        charge = sandbox.stats()["charges"].get(payment.idempotency_key)
        return charge is not None and charge["attempts"] == 1

    await eventually(charging, what="the charge to reach the gateway")


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
        await charge_reaches_gateway(booking, payment_sandbox, held["id"])
        doomed.kill()
        assert doomed.popen.returncode == -9

    reservation = await booking.reservation(held["id"])
    assert reservation.status == "payment_pending"

    with run_worker(jobs_log_dir, env={**worker_env, **RESTORE_ENV}, name="successor"):
        await booking.wait_for_status(held["id"], "confirmed", timeout_s=30)

    [payment] = await booking.payments(held["id"])
    assert (payment.status, payment.attempts) == ("succeeded", 2)
    charge = payment_sandbox.stats()["charges"][payment.idempotency_key]
    assert charge == {"applied": 1, "attempts": 2}


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
        await booking.pay(account, held["id"], "tok_slow_2000")
        await charge_reaches_gateway(booking, payment_sandbox, held["id"])
        terminated.popen.send_signal(signal.SIGTERM)
        exit_code = await asyncio.to_thread(terminated.popen.wait, 30)

    assert exit_code == 0
    reservation = await booking.reservation(held["id"])
    assert reservation.status == "confirmed"  # finished before the worker exited
    [payment] = await booking.payments(held["id"])
    assert (payment.status, payment.attempts) == ("succeeded", 1)
    assert payment_sandbox.stats()["charges"][payment.idempotency_key] == {
        "applied": 1,
        "attempts": 1,
    }
