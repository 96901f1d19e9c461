"""The outbox relay: a broker outage never fails a request, and the sweep catches up."""

from __future__ import annotations

import asyncio
import json
import selectors
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable
from functools import partial
from typing import TypeVar

import httpx
import pytest
from celery import Celery
from fastapi import FastAPI
from sqlalchemy import select

from tests import environment
from tests.support.apps import client_of, running
from tests.support.booking import Booking, expire_now
from tests.support.money import subjects
from tests.support.redis_server import redis_server
from tests.support.sandboxes import PaymentSandbox, SmtpSink, free_port
from tests.support.workers import CeleryProcess, eventually, finished, wait_for_messages
from tripbook.core.outbox import Message, OutboxEvent
from tripbook.core.relay import create_client, send_batch
from tripbook.settings import Settings

pytestmark = pytest.mark.slow

T = TypeVar("T")

BACKLOG = 3  # unpublished rows the backlog test leaves the sweep
BROKER_HANG_S = 60.0  # how long a hung broker keeps the relay waiting: far above any wait here


@pytest.fixture(scope="module")
def worker_env(worker_env: dict[str, str]) -> dict[str, str]:
    # Sweep every unpublished row at once: here nothing else is publishing them.
    return {**worker_env, "TRIPBOOK_OUTBOX_SWEEP_GRACE_S": "0"}


@pytest.fixture(scope="module")
async def broker_down_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The API with its broker on a port where nothing listens: Redis is "down"."""
    async with running(settings, broker_url=f"redis://127.0.0.1:{free_port()}/1") as application:
        yield application


@pytest.fixture
async def broker_down_client(broker_down_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(broker_down_app) as c:
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

    await down.pay(account, held["id"], "tok_approve")  # 202: the outbox has it

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
    messages = await wait_for_messages(
        smtp_sink, to=account.email, count=2, exact_for=(booking.sessionmaker, held["id"])
    )
    assert sorted(m["subject"] for m in messages) == subjects(
        held["id"], "reservation_held", "reservation_confirmed"
    )


class BlackHole:
    """A "broker" that takes connections and requests and never answers: a publish to it
    waits until ``close()`` (or its own socket timeout), as on a hung Redis."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.received = 0  # bytes of requests, all unanswered
        self.connections: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self.listener, selectors.EVENT_READ)
            while not self._closed.is_set():
                for key, _ in selector.select(timeout=0.05):
                    if key.fileobj is self.listener:
                        connection, _ = self.listener.accept()
                        self.connections.append(connection)
                        selector.register(connection, selectors.EVENT_READ)
                    else:
                        data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                        self.received += len(data)
                        if not data:
                            selector.unregister(key.fileobj)

    def close(self) -> None:
        """Hang up on every caller and stop listening: what waited now fails at once."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._thread.join()
        for connection in self.connections:
            connection.close()
        self.listener.close()


@pytest.fixture
async def hung_broker_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, BlackHole]]:
    """The API with a broker that never answers, and a publish timeout far above any wait
    of the test: a request that waited for the broker would not come back."""
    hole = BlackHole()
    try:
        async with running(
            settings,
            broker_url=f"redis://127.0.0.1:{hole.port}/1",
            relay_publish_timeout_s=BROKER_HANG_S,
        ) as application:
            try:
                yield application, hole
            finally:
                hole.close()  # before the relay's shutdown publishes what it still has
    finally:
        hole.close()


async def without_the_broker(request: Awaitable[T]) -> T:
    """The request's result, which must not wait for the hung broker's timeout."""
    try:
        return await asyncio.wait_for(request, BROKER_HANG_S / 2)
    except TimeoutError:
        raise AssertionError("the request waited for the broker") from None


async def test_a_request_never_waits_for_a_hung_broker(
    booking: Booking, hung_broker_app: tuple[FastAPI, BlackHole]
) -> None:
    """The relay publishes after the response: with the broker taking requests and never
    answering, the hold and the payment are answered while their events wait for it."""
    app, hole = hung_broker_app
    account, departure = await booking.customer_and_departure()
    async with client_of(app) as http:
        hung = Booking(http, booking.factories, booking.sessionmaker)
        held = await without_the_broker(hung.hold(account, departure.id))
        # The relay has sent the "seats held" event to the broker and waits for its answer.
        await eventually(lambda: hole.received > 0, what="the relay to be stuck on the broker")

        await without_the_broker(hung.pay(account, held["id"], "tok_approve"))

    # Answered while the relay still waits: no attempt of either event has ended yet.
    events = await booking.events(held["id"])
    assert [event.task for event in events] == ["email.send", "payments.settle"]
    assert [(e.published_at, e.publish_attempts) for e in events] == [(None, 0)] * 2
    hole.close()

    async def attempted() -> list[OutboxEvent] | None:
        events = await booking.events(held["id"])
        return events if all(event.publish_attempts for event in events) else None

    # The broker hung up: both attempts fail, and the outbox keeps both for the sweep.
    for event in await eventually(attempted, timeout_s=10, what="the attempts to fail"):
        assert (event.published_at, event.publish_attempts) == (None, 1)
        assert event.last_error is not None
    assert (await booking.reservation(held["id"])).status == "payment_pending"


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
    worker: CeleryProcess,
    booking: Booking,
    broker_down_client: httpx.AsyncClient,
    broker: Celery,
    worker_metrics_port: int,
) -> None:
    """Rows the sweep cannot take (locked by another sweep, here the test) are its
    backlog, counted exactly; once it can, it publishes them and the backlog is 0."""
    account, departure = await booking.customer_and_departure()
    down = Booking(broker_down_client, booking.factories, booking.sessionmaker)
    held = [await down.hold(account, departure.id) for _ in range(BACKLOG)]
    event_ids = [
        await eventually(partial(publish_failed, booking, h["id"]), what="a failed publish")
        for h in held
    ]

    async with booking.sessionmaker() as other_sweep, other_sweep.begin():
        await other_sweep.execute(
            select(OutboxEvent.id).where(OutboxEvent.id.in_(event_ids)).with_for_update()
        )
        assert await sweep_backlog(worker, broker, worker_metrics_port) == BACKLOG

    assert await sweep_backlog(worker, broker, worker_metrics_port) == 0
    for event in await _reload(booking, event_ids):
        assert (event.publish_attempts, event.last_error) == (2, None)
        assert event.published_at is not None


async def publish_failed(booking: Booking, reservation_id: str) -> uuid.UUID | None:
    """The reservation's one event, once the relay's attempt to publish it failed."""
    [event] = await booking.events(reservation_id)
    return event.id if event.publish_attempts == 1 and event.published_at is None else None


async def sweep_backlog(worker: CeleryProcess, broker: Celery, metrics_port: int) -> float:
    """Run one sweep on the worker; the backlog it then reports on /metrics."""
    sweep = broker.send_task("maintenance.sweep_outbox", queue="maintenance")
    await eventually(partial(finished, [worker], sweep.id), what="the sweep")
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
    [value] = [
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("tripbook_outbox_backlog ")
    ]
    return value


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
    unheard = environment.own_key_prefix("unheard")
    client = create_client(settings.model_copy(update={"redis_key_prefix": unheard}))
    try:
        outcome = send_batch(client, [unroutable, routable])
    finally:
        client.close()

    assert outcome == {
        unroutable.event_id: "No queue for task 'nowhere.do_it'",
        routable.event_id: None,
    }
