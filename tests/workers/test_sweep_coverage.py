"""The outbox sweep (``OutboxRelay.sweep``, run by ``maintenance.sweep_outbox``): rows
younger than the grace are left to the after-commit relay, and each call publishes at most
``batch`` rows, oldest first.

The relay runs in-process on its own engine, publishing to a key space of the test broker
that no worker listens to, so what reached the broker, and in which order, can be read
back. The rows are far older than anything else the run writes and the grace is hours
long, so no other test's leftovers take part.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis
from sqlalchemy import delete, select

from tests import environment
from tests.support.factories import Factories
from tripbook.core.db import create_engine, unit_of_work
from tripbook.core.outbox import OutboxEvent
from tripbook.core.relay import OutboxRelay, SweepResult
from tripbook.settings import Settings

GRACE = timedelta(hours=12)
BATCH = 2
OLD_ROWS = 5  # three sweeps: 2, 2, then 1


@dataclass(frozen=True, slots=True)
class Sweeper:
    relay: OutboxRelay
    queue_key: str  # the Redis list of the ``email`` queue in the sweeper's key space

    async def sweep(self) -> SweepResult:
        return await self.relay.sweep(older_than=GRACE, batch=BATCH)


@pytest.fixture
async def sweeper(settings: Settings) -> AsyncIterator[Sweeper]:
    unheard = environment.own_key_prefix("unheard")
    private = settings.model_copy(update={"redis_key_prefix": unheard})
    engine = create_engine(private, pool_size=2, max_overflow=0)
    relay = OutboxRelay(private, engine)
    try:
        yield Sweeper(relay=relay, queue_key=f"{unheard}email")
    finally:
        await relay.aclose()
        await engine.dispose()
        async with Redis.from_url(settings.broker_url) as redis:
            await redis.delete(f"{unheard}email")


@pytest.fixture
async def rows(factories: Factories) -> AsyncIterator[dict[str, list[uuid.UUID]]]:
    """Unpublished rows: ``old`` (a day and more, oldest first) and ``young`` (within the
    grace, one of them only just)."""
    now = datetime.now(UTC)
    created = {
        # Inserted newest first, so the sweep's order cannot come from insertion order.
        "old": [now - timedelta(days=1, minutes=n) for n in range(OLD_ROWS)][::-1],
        "young": [now - GRACE + timedelta(minutes=1), now - timedelta(seconds=1)],
    }
    ids = {kind: [uuid.uuid4() for _ in times] for kind, times in created.items()}
    async with unit_of_work(factories.sessionmaker) as session:
        for kind in ("young", "old"):
            for event_id, created_at in reversed(list(zip(ids[kind], created[kind], strict=True))):
                session.add(
                    OutboxEvent(
                        id=event_id,
                        task="email.send",
                        payload={"sweep_test": kind},
                        request_id=None,
                        created_at=created_at,
                    )
                )
    try:
        yield ids
    finally:
        async with unit_of_work(factories.sessionmaker) as session:
            await session.execute(
                delete(OutboxEvent).where(OutboxEvent.id.in_(ids["old"] + ids["young"]))
            )


async def load(factories: Factories, ids: Sequence[uuid.UUID]) -> list[OutboxEvent]:
    async with factories.sessionmaker() as session:
        result = await session.scalars(select(OutboxEvent).where(OutboxEvent.id.in_(ids)))
        by_id = {event.id: event for event in result}
    return [by_id[event_id] for event_id in ids]


async def published(factories: Factories, ids: Sequence[uuid.UUID]) -> list[bool]:
    return [event.published_at is not None for event in await load(factories, ids)]


async def sent_in_order(sweeper: Sweeper, settings: Settings) -> list[uuid.UUID]:
    """Task ids on the broker queue, in publish order (kombu LPUSHes, consumers BRPOP)."""
    async with Redis.from_url(settings.broker_url) as redis:
        raw = await redis.lrange(sweeper.queue_key, 0, -1)
    return [uuid.UUID(json.loads(message)["headers"]["id"]) for message in reversed(raw)]


async def test_each_sweep_publishes_one_batch_oldest_first_and_spares_young_rows(
    sweeper: Sweeper,
    rows: dict[str, list[uuid.UUID]],
    factories: Factories,
    settings: Settings,
) -> None:
    old, young = rows["old"], rows["young"]

    first = await sweeper.sweep()
    assert (first.published, first.failed) == (BATCH, 0)
    assert await published(factories, old) == [True, True, False, False, False]

    second = await sweeper.sweep()
    assert (second.published, second.failed) == (BATCH, 0)
    assert await published(factories, old) == [True, True, True, True, False]

    third = await sweeper.sweep()
    assert (third.published, third.failed) == (1, 0)
    assert await published(factories, old) == [True] * OLD_ROWS

    # Nothing older than the grace is left: the young rows stay for the relay.
    fourth = await sweeper.sweep()
    assert (fourth.published, fourth.failed) == (0, 0)
    for event in await load(factories, young):
        assert (event.published_at, event.publish_attempts, event.last_error) == (None, 0, None)
    for event in await load(factories, old):
        assert (event.publish_attempts, event.last_error) == (1, None)

    # The broker got each old row once, oldest first, and no young one.
    assert await sent_in_order(sweeper, settings) == old
