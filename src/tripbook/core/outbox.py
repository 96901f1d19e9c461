"""The transactional outbox: durable work recorded in the same transaction as the change.

A service calls ``enqueue`` inside its unit of work; after commit a relay publishes the
events to Celery by task name (the API never imports ``workers``), from the ``Message`` the
unit of work kept rather than by reading the rows back. A beat sweep publishes
anything a crash left behind. Consumers record the event id in ``processed_event`` inside
their own transaction, so a second delivery changes nothing.
"""

from __future__ import annotations

import uuid
import weakref
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, Uuid, func, select, text
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from tripbook.core.db import Base, TimestampMixin, after_commit


class OutboxEvent(TimestampMixin, Base):
    __tablename__ = "outbox_event"
    __table_args__ = (
        Index(
            "ix_outbox_event_unpublished",
            "created_at",
            postgresql_where=text("published_at IS NULL"),
        ),
        # Redelivery scans recent publications for events nobody processed.
        Index("ix_outbox_event_published_at", "published_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    task: Mapped[str] = mapped_column(String(100))  # a stable Celery task name
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    request_id: Mapped[str | None] = mapped_column(String(128))
    published_at: Mapped[datetime | None]
    publish_attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class ProcessedEvent(Base):
    """Idempotency for consumers: one row per (event, consumer) that has taken effect."""

    __tablename__ = "processed_event"

    event_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("outbox_event.id", ondelete="CASCADE"), primary_key=True
    )
    consumer: Mapped[str] = mapped_column(String(100), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(server_default=func.now())


@dataclass(frozen=True, slots=True)
class Message:
    """What the relay publishes for one outbox row: the same values, kept in memory."""

    event_id: uuid.UUID
    task: str
    payload: dict[str, Any]
    request_id: str | None

    @classmethod
    def from_event(cls, event: OutboxEvent) -> Message:
        return cls(event.id, event.task, event.payload, event.request_id)


Publisher = Callable[[Sequence[Message]], Awaitable[None]]

# The relay publishing for each engine (the API's, a worker process's). A session whose
# engine has none (the CLI, a script) leaves its events to the beat sweep.
_publishers: weakref.WeakKeyDictionary[AsyncEngine, Publisher] = weakref.WeakKeyDictionary()


def attach_publisher(engine: AsyncEngine, publisher: Publisher) -> None:
    _publishers[engine] = publisher


def detach_publisher(engine: AsyncEngine) -> None:
    _publishers.pop(engine, None)


async def publish_committed(engine: object, messages: Sequence[Message]) -> None:
    """Have the engine's relay publish events whose rows are already committed."""
    publisher = _publishers.get(engine) if isinstance(engine, AsyncEngine) else None
    if messages and publisher is not None:
        await publisher(messages)


def publish_after_commit(session: AsyncSession, message: Message) -> None:
    """Have the relay publish ``message`` once this unit of work commits.

    ``enqueue`` calls it itself. One after-commit callback per session publishes every
    event the session recorded.
    """
    messages: list[Message] = session.info.setdefault("outbox_messages", [])
    if not messages:

        async def publish() -> None:
            await publish_committed(session.bind, session.info.pop("outbox_messages", []))

        after_commit(session, publish)
    messages.append(message)


def enqueue(
    session: AsyncSession, task: str, payload: dict[str, Any], *, request_id: str | None
) -> OutboxEvent:
    event = OutboxEvent(id=uuid.uuid4(), task=task, payload=payload, request_id=request_id)
    session.add(event)
    publish_after_commit(session, Message.from_event(event))
    return event


async def event_exists(session: AsyncSession, event_id: uuid.UUID) -> bool:
    """Whether this database wrote the event (a message can outlive its database)."""
    found = await session.scalar(select(OutboxEvent.id).where(OutboxEvent.id == event_id))
    return found is not None


async def claim_processing(session: AsyncSession, event_id: uuid.UUID, consumer: str) -> bool:
    """True the first time (in this transaction) a consumer handles the event; else False."""
    result = await session.execute(
        insert(ProcessedEvent)
        .values(event_id=event_id, consumer=consumer)
        .on_conflict_do_nothing()
        .returning(ProcessedEvent.event_id)
    )
    return result.first() is not None
