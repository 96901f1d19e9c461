"""The payment gateway down, then slow: settlement retries with growing backoff, the
reservation stays ``payment_pending`` and ``GET …/payment`` says why, and once the
gateway answers the reservation is confirmed with exactly one charge applied.

Each test runs its own worker against its own gateway: a port nobody listens on (down),
or a sandbox told to answer late (slow), with a short gateway timeout and short backoffs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from tests.support.booking import Booking
from tests.support.factories import Account
from tests.support.sandboxes import free_port, run_payment_sandbox
from tests.support.workers import CeleryProcess, broker_backlog, eventually, run_worker
from tripbook.settings import Settings

pytestmark = pytest.mark.slow

GATEWAY_TIMEOUT_S = 0.5
BACKOFF_S = 0.2
BACKOFF_MAX_S = 1.6
FAULT_ENV = {
    "TRIPBOOK_PAYMENT_GATEWAY_TIMEOUT_S": str(GATEWAY_TIMEOUT_S),
    "TRIPBOOK_TASK_RETRY_BACKOFF_S": str(BACKOFF_S),
    "TRIPBOOK_TASK_RETRY_BACKOFF_MAX_S": str(BACKOFF_MAX_S),
    # Plenty: the tests bring the gateway back long before these are spent.
    "TRIPBOOK_PAYMENT_MAX_RETRIES": "20",
}
# Celery's timer may run a countdown's task a few milliseconds early.
CLOCK_SLACK_S = 0.02


@pytest.fixture(scope="module", autouse=True)
async def no_backlog(settings: Settings, jobs_log_dir: Path, worker_env: dict[str, str]) -> None:
    """Work earlier tests left in the broker is done first, against a healthy gateway, so
    the faulty gateway's worker serves the payment under test and nothing else."""
    with run_worker(jobs_log_dir, env=worker_env, name="drain"):
        await eventually(lambda: broker_backlog() == 0, timeout_s=60, what="an empty broker")


@dataclass(frozen=True)
class Attempt:
    """One run of the settle task, from its worker's log: when it started, when its call
    to the gateway returned, and what came back."""

    started_at: datetime
    answered_at: datetime
    outcome: str
    detail: str


def attempts_logged(worker: CeleryProcess, request_id: str) -> list[Attempt]:
    """The runs of the settle task for the payment the request ``request_id`` made."""
    lines = worker.log_lines()
    [task_id] = {
        line["task_id"]
        for line in lines
        if line.get("event") == "gateway_call" and line.get("request_id") == request_id
    }

    def at(line: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(line["timestamp"])

    mine = [line for line in lines if line.get("task_id") == task_id]
    starts = [at(line) for line in mine if line["event"] == "task_started"]
    calls = [line for line in mine if line["event"] == "gateway_call"]
    return [
        Attempt(started, at(call), call["outcome"], call["detail"])
        for started, call in zip(starts, calls, strict=True)
    ]


def assert_backed_off(attempts: list[Attempt]) -> None:
    """Between a failed call and the next run, retry n waited at least half of
    min(cap, base * 2**n) (the rest is jitter): the configured backoff, growing."""
    for retry, (failed, next_run) in enumerate(pairwise(attempts)):
        least = min(BACKOFF_MAX_S, BACKOFF_S * 2**retry) / 2
        waited = (next_run.started_at - failed.answered_at).total_seconds()
        assert waited >= least - CLOCK_SLACK_S, f"retry {retry}: {waited:.3f}s < {least}s"


async def retrying(
    booking: Booking, account: Account, reservation_id: str, *, attempts: int
) -> dict[str, Any] | None:
    """The payment as the customer sees it, once ``attempts`` calls were made and failed.
    Every look also checks that the reservation is still waiting for its money."""
    reservation = await booking.client.get(
        f"/v1/reservations/{reservation_id}", headers=account.headers
    )
    assert reservation.json()["status"] == "payment_pending"
    response = await booking.client.get(
        f"/v1/reservations/{reservation_id}/payment", headers=account.headers
    )
    assert response.status_code == 200, response.text
    payment: dict[str, Any] = response.json()
    # Sent and not answered is "unknown", never "failed"; before the first call, "pending".
    assert payment["status"] == ("unknown" if payment["attempts"] else "pending")
    failed = payment["attempts"] >= attempts and payment["last_error"] is not None
    return payment if failed else None


async def test_gateway_down_then_back(
    booking: Booking, jobs_log_dir: Path, worker_env: dict[str, str]
) -> None:
    port = free_port()  # nothing listens here until the gateway "comes back"
    env = {**worker_env, **FAULT_ENV, "TRIPBOOK_PAYMENT_GATEWAY_URL": f"http://127.0.0.1:{port}"}
    account, departure = await booking.customer_and_departure()
    held = await booking.hold(account, departure.id)
    request_id = f"gateway-down-{uuid.uuid4().hex}"

    with run_worker(jobs_log_dir, env=env, name="gateway-down") as worker:
        await booking.pay(account, held["id"], "tok_approve", request_id=request_id)
        seen = await eventually(
            partial(retrying, booking, account, held["id"], attempts=4),
            what="four failed attempts",
        )
        assert seen["last_error"] == "The payment provider could not be reached. Retrying."

        with run_payment_sandbox(jobs_log_dir, port=port) as gateway:
            await booking.wait_for_status(held["id"], "confirmed")
            stats = gateway.stats()
        attempts = attempts_logged(worker, request_id)

    [payment] = await booking.payments(held["id"])
    assert stats["charges"] == {payment.idempotency_key: {"applied": 1, "attempts": 1}}
    assert (payment.status, payment.error) == ("succeeded", None)
    assert payment.attempts == len(attempts) >= 5
    assert attempts[-1].outcome == "Approved"
    assert {(a.outcome, a.detail) for a in attempts[:-1]} == {
        ("RetryableFailure", "network: ConnectError")
    }
    assert_backed_off(attempts)
    response = await booking.client.get(
        f"/v1/reservations/{held['id']}/payment", headers=account.headers
    )
    assert response.json() | {"created_at": None, "updated_at": None} == {
        "status": "succeeded",
        "amount": {"amount": 2500, "currency": "EUR"},
        "attempts": len(attempts),
        "last_error": None,
        "refunds": [],
        "created_at": None,
        "updated_at": None,
    }


async def test_gateway_slow_then_fast(
    booking: Booking, jobs_log_dir: Path, worker_env: dict[str, str]
) -> None:
    account, departure = await booking.customer_and_departure()
    held = await booking.hold(account, departure.id)
    request_id = f"gateway-slow-{uuid.uuid4().hex}"

    with run_payment_sandbox(jobs_log_dir) as gateway:
        # It still handles every charge, but only after the worker stopped waiting.
        gateway.set_latency(4 * GATEWAY_TIMEOUT_S)
        env = {**worker_env, **FAULT_ENV, "TRIPBOOK_PAYMENT_GATEWAY_URL": gateway.url}
        with run_worker(jobs_log_dir, env=env, name="gateway-slow") as worker:
            await booking.pay(account, held["id"], "tok_approve", request_id=request_id)
            seen = await eventually(
                partial(retrying, booking, account, held["id"], attempts=3),
                what="three timed-out attempts",
            )
            assert seen["last_error"] == "The payment provider did not answer in time. Retrying."

            gateway.set_latency(0)
            await booking.wait_for_status(held["id"], "confirmed")
            [payment] = await booking.payments(held["id"])

            # The calls the worker gave up on reach the gateway late; each is a replay.
            def every_call_landed() -> bool:
                charge = gateway.stats()["charges"].get(payment.idempotency_key)
                return charge is not None and charge["attempts"] == payment.attempts

            await eventually(every_call_landed, what="every attempt to reach the gateway")
            stats = gateway.stats()
        attempts = attempts_logged(worker, request_id)

    assert stats["charges"][payment.idempotency_key] == {
        "applied": 1,
        "attempts": payment.attempts,
    }
    assert (payment.status, payment.error) == ("succeeded", None)
    assert payment.attempts == len(attempts) >= 4
    assert attempts[-1].outcome == "Approved"
    assert {(a.outcome, a.detail) for a in attempts[:-1]} == {
        ("RetryableFailure", "timeout: ReadTimeout")
    }
    for timed_out in attempts[:-1]:
        waited = (timed_out.answered_at - timed_out.started_at).total_seconds()
        assert waited >= GATEWAY_TIMEOUT_S - CLOCK_SLACK_S
    assert_backed_off(attempts)
