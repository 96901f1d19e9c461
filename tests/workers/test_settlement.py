"""Paying through the API, settled by a real worker against the payment sandbox."""

from __future__ import annotations

import uuid
from functools import partial
from pathlib import Path

import httpx
import pytest
from celery import Celery

from tests.support.booking import Booking
from tests.support.money import emails_sent, subjects
from tests.support.sandboxes import PaymentSandbox, SmtpSink
from tests.support.workers import (
    CeleryProcess,
    eventually,
    finished,
    run_worker,
    wait_for_messages,
)
from tripbook.core.outbox import Message
from tripbook.core.relay import send

pytestmark = pytest.mark.slow


class TestSettlement:
    async def test_approved_payment_confirms_and_emails(
        self,
        worker: CeleryProcess,
        booking: Booking,
        payment_sandbox: PaymentSandbox,
        smtp_sink: SmtpSink,
    ) -> None:
        account, departure = await booking.customer_and_departure()
        held = await booking.hold(account, departure.id, seats=2)

        await booking.pay(account, held["id"], "tok_approve")

        await booking.wait_for_status(held["id"], "confirmed")
        messages = await wait_for_messages(
            smtp_sink, to=account.email, count=2, exact_for=(booking.sessionmaker, held["id"])
        )
        assert sorted(message["subject"] for message in messages) == subjects(
            held["id"], "reservation_held", "reservation_confirmed"
        )
        confirmation = next(m for m in messages if m["subject"].startswith("Booking"))
        assert held["id"] in confirmation["text"]
        assert held["id"] in confirmation["html"]
        [payment] = await booking.payments(held["id"])
        assert (payment.status, payment.amount, payment.attempts) == ("succeeded", 5000, 1)
        assert payment.gateway_reference is not None
        charge = payment_sandbox.stats()["charges"][payment.idempotency_key]
        assert charge == {"applied": 1, "attempts": 1}
        assert await booking.factories.seats_available(departure.id) == 8

    async def test_declined_payment_releases_the_seats(
        self, worker: CeleryProcess, booking: Booking, smtp_sink: SmtpSink
    ) -> None:
        account, departure = await booking.customer_and_departure(seats=10)
        held = await booking.hold(account, departure.id, seats=3)
        assert await booking.factories.seats_available(departure.id) == 7

        await booking.pay(account, held["id"], "tok_decline")

        await booking.wait_for_status(held["id"], "payment_failed")
        assert await booking.factories.seats_available(departure.id) == 10
        [payment] = await booking.payments(held["id"])
        assert (payment.status, payment.error, payment.attempts) == (
            "failed",
            "card_declined",
            1,
        )
        messages = await wait_for_messages(
            smtp_sink, to=account.email, count=2, exact_for=(booking.sessionmaker, held["id"])
        )
        assert sorted(m["subject"] for m in messages) == subjects(
            held["id"], "reservation_held", "payment_failed"
        )

    async def test_retryable_failures_are_retried_until_approved(
        self, worker: CeleryProcess, booking: Booking, payment_sandbox: PaymentSandbox
    ) -> None:
        account, departure = await booking.customer_and_departure()
        held = await booking.hold(account, departure.id)

        await booking.pay(account, held["id"], "tok_fail_2_then_approve")

        await booking.wait_for_status(held["id"], "confirmed")
        [payment] = await booking.payments(held["id"])
        assert (payment.status, payment.attempts, payment.error) == ("succeeded", 3, None)
        charge = payment_sandbox.stats()["charges"][payment.idempotency_key]
        assert charge == {"applied": 1, "attempts": 3}

    async def test_spent_retries_leave_it_unknown_for_reconciliation(
        self,
        worker: CeleryProcess,
        booking: Booking,
        payment_sandbox: PaymentSandbox,
        smtp_sink: SmtpSink,
    ) -> None:
        account, departure = await booking.customer_and_departure(seats=5)
        held = await booking.hold(account, departure.id, seats=2)

        # Three attempts are allowed here (TRIPBOOK_PAYMENT_MAX_RETRIES=2); all fail.
        await booking.pay(account, held["id"], "tok_fail_5_then_approve")

        [event] = [e for e in await booking.events(held["id"]) if e.task == "payments.settle"]
        await eventually(partial(finished, [worker], event.id, at_least=3), what="3 attempts")
        [payment] = await booking.payments(held["id"])
        # No definite answer: unknown, never a decline; the seats stay held.
        assert (payment.status, payment.attempts, payment.error) == (
            "unknown",
            3,
            "processor_unavailable",
        )
        assert (await booking.reservation(held["id"])).status == "payment_pending"
        assert await booking.factories.seats_available(departure.id) == 3
        charge = payment_sandbox.stats()["charges"][payment.idempotency_key]
        assert charge == {"applied": 0, "attempts": 3}
        assert await emails_sent(
            booking.sessionmaker, smtp_sink, to=account.email, reservation_id=held["id"]
        ) == subjects(held["id"], "reservation_held")

    async def test_a_task_delivered_twice_charges_and_emails_once(
        self,
        worker: CeleryProcess,
        booking: Booking,
        broker: Celery,
        payment_sandbox: PaymentSandbox,
        smtp_sink: SmtpSink,
        jobs_log_dir: Path,
        worker_env: dict[str, str],
    ) -> None:
        account, departure = await booking.customer_and_departure()
        with run_worker(jobs_log_dir, env=worker_env, name="second") as second:
            held = await booking.hold(account, departure.id)
            # Slow enough that both workers are inside the charge at the same time: each
            # takes one delivery (one task at a time, prefetching none), and the second
            # reaches the gateway while the first's 3 s there are far from over.
            await booking.pay(account, held["id"], "tok_slow_3000")
            events = await booking.events(held["id"])
            assert [event.task for event in events] == ["email.send", "payments.settle"]
            for event in events:
                send(broker, Message.from_event(event))  # a second delivery of each

            await booking.wait_for_status(held["id"], "confirmed")
            for event in events:
                await eventually(
                    partial(finished, [worker, second], event.id, at_least=2),
                    what=f"both deliveries of {event.task}",
                )

        settle = events[1]  # payments.settle, as asserted above
        # The proof of the overlap: the gateway turned one delivery's call away because
        # the other's, under the same idempotency key, was still being processed.
        turned_away = [
            line
            for process in (worker, second)
            for line in process.log_lines()
            if line.get("event") == "gateway_call"
            and line.get("task_id") == str(settle.id)
            and line.get("detail") == "idempotency_key_in_use"
        ]
        assert turned_away, "the two deliveries never were at the gateway at once"
        [payment] = await booking.payments(held["id"])
        assert payment.status == "succeeded"
        charge = payment_sandbox.stats()["charges"][payment.idempotency_key]
        assert charge == {"applied": 1, "attempts": payment.attempts}
        messages = await wait_for_messages(
            smtp_sink, to=account.email, count=2, exact_for=(booking.sessionmaker, held["id"])
        )
        assert sorted(m["subject"] for m in messages) == subjects(
            held["id"], "reservation_held", "reservation_confirmed"
        )
        assert len({m["message_id"] for m in messages}) == 2

    async def test_request_id_reaches_the_worker_and_the_gateway(
        self, worker: CeleryProcess, booking: Booking, payment_sandbox: PaymentSandbox
    ) -> None:
        account, departure = await booking.customer_and_departure()
        held = await booking.hold(account, departure.id)
        request_id = f"pay-{uuid.uuid4().hex}"

        await booking.pay(account, held["id"], "tok_approve", request_id=request_id)

        await booking.wait_for_status(held["id"], "confirmed")
        assert request_id in payment_sandbox.stats()["last_request_ids"]
        confirmation_email = await eventually(
            lambda: next(
                (
                    line
                    for line in worker.log_lines()
                    if line.get("event") == "email_sent"
                    and line.get("template") == "reservation_confirmed"
                    and line.get("reservation_id") == held["id"]
                ),
                None,
            ),
            what="the confirmation email's log line",
        )
        assert confirmation_email["request_id"] == request_id
        settle_lines = [
            line
            for line in worker.log_lines()
            if line.get("task_name") == "payments.settle" and line.get("request_id") == request_id
        ]
        events = {line["event"] for line in settle_lines}
        assert {"task_started", "gateway_call", "settlement", "task_finished"} <= events
        # Every line of that task carries the id, Celery's own included.
        [task_id] = {line["task_id"] for line in settle_lines}
        assert all(
            line.get("request_id") == request_id
            for line in worker.log_lines()
            if line.get("task_id") == task_id
        )

    async def test_cancelling_a_confirmed_reservation_refunds_it(
        self,
        worker: CeleryProcess,
        booking: Booking,
        payment_sandbox: PaymentSandbox,
        smtp_sink: SmtpSink,
    ) -> None:
        account, departure = await booking.customer_and_departure(seats=4)
        held = await booking.hold(account, departure.id, seats=2)
        await booking.pay(account, held["id"], "tok_approve")
        await booking.wait_for_status(held["id"], "confirmed")

        response = await booking.client.post(
            f"/v1/reservations/{held['id']}/cancel", headers=account.headers
        )

        assert response.status_code == 200
        assert await booking.factories.seats_available(departure.id) == 4

        async def refunded() -> bool:
            refunds = await booking.payments(held["id"], kind="refund")
            return bool(refunds) and refunds[0].status == "succeeded"

        await eventually(refunded, what="the refund")
        [charge] = await booking.payments(held["id"])
        [refund] = await booking.payments(held["id"], kind="refund")
        assert (refund.amount, refund.idempotency_key) == (5000, f"refund-{charge.id}")
        assert payment_sandbox.stats()["refunds"][refund.idempotency_key] == {
            "applied": 1,
            "attempts": 1,
        }
        messages = await wait_for_messages(
            smtp_sink, to=account.email, count=4, exact_for=(booking.sessionmaker, held["id"])
        )
        assert sorted(m["subject"] for m in messages) == subjects(
            held["id"],
            "reservation_held",
            "reservation_confirmed",
            "reservation_cancelled",
            "refund_issued",
        )


class TestWorkerMetrics:
    async def test_task_outcomes_are_served_by_the_worker(
        self, worker: CeleryProcess, booking: Booking, worker_metrics_port: int
    ) -> None:
        account, departure = await booking.customer_and_departure()
        held = await booking.hold(account, departure.id)
        await booking.pay(account, held["id"], "tok_fail_1_then_approve")
        await booking.wait_for_status(held["id"], "confirmed")

        def exposition() -> str | None:
            text = httpx.get(f"http://127.0.0.1:{worker_metrics_port}/metrics").text
            settled = 'tripbook_tasks_total{outcome="success",task="payments.settle"}'
            return text if settled in text else None

        text = await eventually(exposition, what="the settle task in /metrics")
        assert 'tripbook_tasks_total{outcome="retry",task="payments.settle"}' in text
        assert 'tripbook_task_duration_seconds_count{task="payments.settle"}' in text
