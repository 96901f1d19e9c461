"""The outbox relay: committed outbox rows become Celery tasks, sent by name (DESIGN §6).

The API never imports ``workers``. It holds a bare Celery *client* built from the same
settings as the worker app (broker, key prefix, transport options) and sends each event
to the queue its task name starts with (``payments.settle`` → ``payments``).

Two paths publish:

- right after commit, the events one unit of work recorded (``outbox.publish_after_commit``),
  from the messages it kept: no read back, one UPDATE to mark them published;
- the beat sweep, for rows left unpublished by a broker outage or a crash between commit
  and publish, batch by batch under ``FOR UPDATE SKIP LOCKED`` so replicas never collide;
  and, since a broker can lose what it accepted, for rows published long ago that no
  consumer recorded as processed (``redeliver``).

Publishing is kombu's blocking I/O, so it runs in a thread, with short timeouts and no
retry loop: an unreachable broker costs a request at most a timeout, and its rows simply
wait for the sweep. Consumers are idempotent, so a row published twice does no harm.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from celery import Celery
from sqlalchemy import exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from tripbook.core import outbox
from tripbook.core.db import autocommit, create_sessionmaker, is_transient, unit_of_work
from tripbook.core.logging import get_logger
from tripbook.core.metrics import OUTBOX_BACKLOG, OUTBOX_REDELIVERED
from tripbook.core.outbox import Message, OutboxEvent, ProcessedEvent
from tripbook.settings import Settings

log = get_logger(__name__)

QUEUES = ("payments", "email", "maintenance")
# The message header carrying the request id; workers bind it into their log lines.
REQUEST_ID_HEADER = "request_id"
MAX_ERROR_CHARS = 500
# Events one background round publishes at most (one publish, one UPDATE).
BACKGROUND_BATCH = 500
# How far back redelivery looks: an unprocessed event is republished every grace period,
# so only one whose deliveries are spent (or a sweep stopped for days) is older.
REDELIVERY_HORIZON = timedelta(days=7)


def queue_for(task: str) -> str:
    """The queue a task is routed to: the first part of its dotted name."""
    queue = task.partition(".")[0]
    if queue not in QUEUES:
        raise ValueError(f"No queue for task {task!r}")
    return queue


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    """What the worker app and the relay client must agree on to share a broker."""
    return {
        "visibility_timeout": settings.broker_visibility_timeout_s,
        # Isolates deployments (and test runs) sharing one Redis.
        "global_keyprefix": settings.redis_key_prefix,
    }


def create_client(settings: Settings) -> Celery:
    """A publishing-only Celery app: fails fast instead of retrying a dead broker."""
    timeout = settings.relay_publish_timeout_s
    client = Celery("tripbook-relay", broker=settings.broker_url, set_as_current=False)
    client.conf.update(
        broker_transport_options={
            **broker_transport_options(settings),
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
            "max_retries": 0,
        },
        broker_connection_timeout=timeout,
        broker_connection_retry=False,
        broker_pool_limit=4,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_publish_retry=False,
    )
    return client


def send(client: Celery, message: Message, **options: Any) -> None:
    """Publish one event as its task; the task id is the event id, for the logs."""
    client.send_task(
        message.task,
        kwargs={"event_id": str(message.event_id), "payload": message.payload},
        task_id=str(message.event_id),
        queue=queue_for(message.task),
        headers={REQUEST_ID_HEADER: message.request_id},
        # Celery would saferepr() the arguments for monitoring on every send, about 40 %
        # of a publish's CPU (measured); the event id is what finds the row and its payload.
        argsrepr="()",
        kwargsrepr=f"{{'event_id': '{message.event_id}'}}",
        retry=False,
        ignore_result=True,
        add_to_parent=False,
        **options,
    )


def send_batch(client: Celery, messages: Sequence[Message]) -> dict[uuid.UUID, str | None]:
    """Publish in order in one Redis pipeline: event id → None, or why it was not sent.

    A task with no queue fails alone (it is logged and counted in the backlog). Any
    other failure fails the whole batch with the same reason, even if the pipeline got
    part of it through: the sweep sends those again, and consumers are idempotent.
    kombu's publish batch halves the CPU a message costs (one round trip per batch).
    """
    outcome: dict[uuid.UUID, str | None] = {}
    routable = []
    for message in messages:
        try:
            queue_for(message.task)
        except ValueError as exc:
            outcome[message.event_id] = str(exc)
        else:
            routable.append(message)
    try:
        with client.producer_or_acquire() as producer, producer.batch():
            for message in routable:
                send(client, message, producer=producer)
    except Exception as exc:  # kombu, redis and socket errors alike
        failure = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        outcome.update((message.event_id, failure) for message in routable)
    else:
        outcome.update((message.event_id, None) for message in routable)
    return outcome


@dataclass(frozen=True, slots=True)
class SweepResult:
    published: int
    failed: int
    backlog: int


class OutboxRelay:
    """Publishes one engine's outbox: attached to it so units of work find it after commit."""

    def __init__(self, settings: Settings, engine: AsyncEngine, *, background: bool = False):
        """``background``: publish from one coalescing loop instead of inline after commit.

        The API uses it, so a response never waits for the broker and concurrent requests
        share one SELECT, one publish and one UPDATE. Workers publish inline: their event
        loop only runs while a task does.
        """
        self.engine = engine
        self.sessionmaker: async_sessionmaker[AsyncSession] = create_sessionmaker(engine)
        self.client = create_client(settings)
        self.linger_s = settings.relay_linger_s
        self._pending: list[Message] = []
        self._wakeup = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        outbox.attach_publisher(engine, self.submit if background else self.publish)

    async def submit(self, messages: Sequence[Message]) -> None:
        """Queue events just committed for the background loop; returns at once."""
        self._pending.extend(messages)
        self._wakeup.set()
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._publish_pending_forever())

    async def _publish_pending_forever(self) -> None:
        while True:
            await self._wakeup.wait()
            if self.linger_s:
                await asyncio.sleep(self.linger_s)  # let concurrent commits join the batch
            await self._publish_pending()

    async def _publish_pending(self) -> None:
        self._wakeup.clear()
        while self._pending:
            batch = self._pending[:BACKGROUND_BATCH]
            del self._pending[:BACKGROUND_BATCH]
            await self.publish(batch)

    async def publish(self, messages: Sequence[Message]) -> None:
        """Publish events just committed. Never raises: what fails is left to the sweep.

        The rows are not read back: the messages hold their values. One published twice
        (the sweep got there first) does no harm, consumers being idempotent.
        """
        if not messages:
            return
        try:
            outcome = await anyio.to_thread.run_sync(send_batch, self.client, messages)
            async with autocommit(self.engine) as connection:
                await record_outcome(connection, outcome)
        except Exception as exc:
            if is_transient(exc):
                # A database blip: the rows are committed and the sweep will send them.
                log.warning("outbox_publish_deferred", events=len(messages), error=repr(exc))
            else:
                log.exception("outbox_publish_failed", events=len(messages))

    async def sweep(self, *, older_than: timedelta, batch: int) -> SweepResult:
        """Publish one batch of rows left unpublished for longer than ``older_than``."""
        cutoff = datetime.now(UTC) - older_than
        async with unit_of_work(self.sessionmaker) as session:
            rows = await session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.published_at.is_(None), OutboxEvent.created_at < cutoff)
                .order_by(OutboxEvent.created_at)
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
            # The rows stay locked while they are sent, so another sweep skips them.
            outcome = await self._send_locked(session, list(rows))
        async with self.sessionmaker() as session:
            backlog = await session.scalar(
                select(func.count())
                .select_from(OutboxEvent)
                .where(OutboxEvent.published_at.is_(None))
            )
        OUTBOX_BACKLOG.set(backlog or 0)
        failed = sum(1 for error in outcome.values() if error is not None)
        return SweepResult(published=len(outcome) - failed, failed=failed, backlog=backlog or 0)

    async def redeliver(self, *, older_than: timedelta, batch: int, max_deliveries: int) -> int:
        """Publish again events published before ``older_than`` that no consumer recorded
        as processed: the broker may have lost them (a Redis restart without its data).
        Consumers are idempotent by event id, so a message that was only slow does no harm.
        """
        now = datetime.now(UTC)
        async with unit_of_work(self.sessionmaker) as session:
            rows = await session.scalars(
                select(OutboxEvent)
                .where(
                    OutboxEvent.published_at.between(now - REDELIVERY_HORIZON, now - older_than),
                    OutboxEvent.publish_attempts < max_deliveries,
                    ~exists().where(ProcessedEvent.event_id == OutboxEvent.id),
                )
                .order_by(OutboxEvent.published_at)
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
            events = list(rows)
            outcome = await self._send_locked(session, events)
        sent = sum(1 for error in outcome.values() if error is None)
        if sent:
            OUTBOX_REDELIVERED.inc(sent)
            log.warning("outbox_redelivered", events=sent)
        for event in events:
            if event.publish_attempts + 1 >= max_deliveries and outcome.get(event.id) is None:
                log.error("outbox_last_delivery", event_id=str(event.id), task=event.task)
        return sent

    async def _send_locked(
        self, session: AsyncSession, events: list[OutboxEvent]
    ) -> dict[uuid.UUID, str | None]:
        """Publish rows this session holds locked, and record the outcome on them."""
        messages = [Message.from_event(event) for event in events]
        outcome = (
            await anyio.to_thread.run_sync(send_batch, self.client, messages) if messages else {}
        )
        await record_outcome(await session.connection(), outcome)
        return outcome

    async def aclose(self) -> None:
        outbox.detach_publisher(self.engine)
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await self._publish_pending()  # what was queued goes out now, not at the next sweep
        await anyio.to_thread.run_sync(self.client.close)


async def record_outcome(connection: AsyncConnection, outcome: dict[uuid.UUID, str | None]) -> None:
    sent = [event_id for event_id, error in outcome.items() if error is None]
    if sent:
        await connection.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id.in_(sent))
            .values(
                published_at=func.now(),
                publish_attempts=OutboxEvent.publish_attempts + 1,
                last_error=None,
            )
        )
    failed = {event_id: error for event_id, error in outcome.items() if error is not None}
    if failed:
        error = next(iter(failed.values()))
        await connection.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id.in_(list(failed)))
            .values(publish_attempts=OutboxEvent.publish_attempts + 1, last_error=error)
        )
        log.warning("outbox_publish_failed", events=len(failed), error=error)
