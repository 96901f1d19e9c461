"""The outbox relay: a broker outage never fails a request, and the sweep catches up."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from functools import partial

import httpx
import pytest
from celery import Celery
from fastapi import FastAPI

from tests.support.redis_server import redis_server
from tests.support.sandboxes import PaymentSandbox, SmtpSink, free_port
from tests.support.workers import CeleryProcess, eventually, finished, wait_for_messages
from tests.workers.conftest import Booking, expire_now
from tripbook.core.outbox import Message, OutboxEvent
from tripbook.core.relay import create_client, send_batch
from tripbook.main import create_app
from tripbook.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def worker_env(worker_env: dict[str, str]) -> dict[str, str]:
    # Sweep every unpublished row at once: here nothing else is publishing them.
    return {**worker_env, "TRIPBOOK_OUTBOX_SWEEP_GRACE_S": "0"}


@pytest.fixture(scope="module")
async def broker_down_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The API with its broker on a port where nothing listens: Redis is "down"."""
    broken = settings.model_copy(update={"broker_url": f"redis://127.0.0.1:{free_port()}/1"})
    application = create_app(broken)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def broker_down_client(broker_down_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=broker_down_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tripbook.test") as c:
        yield c


async def test_payment_accepted_while_the_broker_is_down(
    worker: CeleryProcess,
    booking: Booking,
    broker_down_client: httpx.AsyncClient,
    broker: Celery,
    smtp_sink: SmtpSink,
) -> None:
    account, departure = await booking.customer_and_departure()
    down = Booking(broker_down_client, booking.factories, booking.sessionmaker)
    held = await down.hold(account, departure.id)

    started = time.monotonic()
    await down.pay(account, held["id"], "tok_approve")
    assert time.monotonic() - started < 2.0

    async def attempted() -> list[OutboxEvent] | None:
        # The API's relay publishes from a background loop, after the response.
        events = await booking.events(held["id"])
        return events if all(event.publish_attempts for event in events) else None

    events = await eventually(attempted, timeout_s=10, what="the relay's publish attempt")
    assert [event.task for event in events] == ["email.send", "payments.settle"]
    for event in events:
        assert (event.published_at, event.publish_attempts) == (None, 1)
        assert event.last_error is not None
        assert "Connection refused" in event.last_error
    assert (await booking.reservation(held["id"])).status == "payment_pending"

    # Redis is back: beat's sweep (sent here by name) publishes what was left behind.
    broker.send_task("maintenance.sweep_outbox", queue="maintenance")

    await booking.wait_for_status(held["id"], "confirmed")
    for event in await _reload(booking, [event.id for event in events]):
        assert event.published_at is not None
        assert (event.publish_attempts, event.last_error) == (2, None)
    messages = await wait_for_messages(smtp_sink, to=account.email, count=2)
    assert len(messages) == 2


async def test_a_payment_never_sent_before_its_window_closed_takes_no_money(
    worker: CeleryProcess,
    booking: Booking,
    broker_down_client: httpx.AsyncClient,
    broker: Celery,
    payment_sandbox: PaymentSandbox,
) -> None:
    account, departure = await booking.customer_and_departure(seats=3)
    down = Booking(broker_down_client, booking.factories, booking.sessionmaker)
    held = await down.hold(account, departure.id, seats=3)
    await down.pay(account, held["id"], "tok_approve")
    await expire_now(booking, held["id"])

    # The expiry sweep leaves a reservation waiting for its money alone...
    sweep = broker.send_task("maintenance.expire_holds", queue="maintenance")
    await eventually(partial(finished, [worker], sweep.id), what="the expiry sweep")
    assert (await booking.reservation(held["id"])).status == "payment_pending"
    # ...and the settlement, published at last, sees the window closed before any charge.
    broker.send_task("maintenance.sweep_outbox", queue="maintenance")

    await booking.wait_for_status(held["id"], "expired")
    [payment] = await booking.payments(held["id"])
    assert (payment.status, payment.attempts, payment.payment_token) == ("failed", 0, None)
    assert payment.error == "the payment window closed before the charge was attempted"
    assert payment.idempotency_key not in payment_sandbox.stats()["charges"]
    assert await booking.factories.seats_available(departure.id) == 3


async def test_the_sweep_reports_the_backlog(
    worker: CeleryProcess, broker: Celery, worker_metrics_port: int
) -> None:
    broker.send_task("maintenance.sweep_outbox", queue="maintenance")

    def backlog() -> float | None:
        text = httpx.get(f"http://127.0.0.1:{worker_metrics_port}/metrics").text
        for line in text.splitlines():
            if line.startswith("tripbook_outbox_backlog"):
                return float(line.split()[-1])
        return None

    assert await eventually(backlog, what="tripbook_outbox_backlog") >= 0


async def _reload(booking: Booking, event_ids: list[uuid.UUID]) -> list[OutboxEvent]:
    async with booking.sessionmaker() as session:
        return [
            event for event_id in event_ids if (event := await session.get(OutboxEvent, event_id))
        ]


async def test_the_relay_client_recovers_when_redis_returns(settings: Settings) -> None:
    port = free_port()
    down_then_up = settings.model_copy(update={"broker_url": f"redis://127.0.0.1:{port}/1"})
    client = create_client(down_then_up)
    message = Message(uuid.uuid4(), "email.send", {"template": "x"}, "request-0123456789")
    try:
        [error] = send_batch(client, [message]).values()
        assert error is not None
        assert "Connection refused" in error

        with redis_server(port) as redis:
            assert send_batch(client, [message]) == {message.event_id: None}
            assert redis.llen(f"{settings.redis_key_prefix}email") == 1
            sent = json.loads(redis.lpop(f"{settings.redis_key_prefix}email"))
            # The monitoring repr names the event; the body carries the payload.
            assert sent["headers"]["kwargsrepr"] == f"{{'event_id': '{message.event_id}'}}"
            assert sent["headers"]["task"] == "email.send"
    finally:
        client.close()


def test_an_unroutable_event_does_not_block_the_others(settings: Settings) -> None:
    unroutable = Message(uuid.uuid4(), "nowhere.do_it", {}, None)
    routable = Message(uuid.uuid4(), "email.send", {}, None)
    # A key space no worker listens to: the message is only published, never run.
    unheard = f"{settings.redis_key_prefix}unheard-{uuid.uuid4().hex[:8]}:"
    client = create_client(settings.model_copy(update={"redis_key_prefix": unheard}))
    try:
        outcome = send_batch(client, [unroutable, routable])
    finally:
        client.close()

    assert outcome == {
        unroutable.event_id: "No queue for task 'nowhere.do_it'",
        routable.event_id: None,
    }
