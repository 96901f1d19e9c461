"""The API relay's background loop: events committed close together go out together."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import pytest

from tests import environment
from tests.support.workers import eventually
from tripbook.core import relay
from tripbook.core.db import create_engine
from tripbook.core.outbox import Message
from tripbook.core.relay import OutboxRelay
from tripbook.settings import Settings


async def batch_sizes(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, *, linger_s: float, events: int
) -> list[int]:
    """Submit ``events`` one at a time, letting the relay's loop run between them."""
    sizes: list[int] = []
    real_send_batch = relay.send_batch

    def recording_send_batch(client: object, messages: Sequence[Message]) -> object:
        sizes.append(len(messages))
        return real_send_batch(client, messages)  # type: ignore[arg-type]

    monkeypatch.setattr(relay, "send_batch", recording_send_batch)
    # A key space no worker listens to: the messages are only published, never run.
    unheard = environment.own_key_prefix("unheard")
    settings = settings.model_copy(update={"redis_key_prefix": unheard, "relay_linger_s": linger_s})
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    publisher = OutboxRelay(settings, engine, background=True)
    try:
        for _ in range(events):
            await publisher.submit([Message(uuid.uuid4(), "email.send", {}, None)])
            await asyncio.sleep(0)  # the loop may take what is pending now
        await eventually(lambda: sum(sizes) == events, timeout_s=5, what="every event sent")
    finally:
        await publisher.aclose()
        await engine.dispose()
    return sizes


async def test_events_within_the_linger_share_one_publish(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert await batch_sizes(settings, monkeypatch, linger_s=0.5, events=5) == [5]


async def test_without_a_linger_the_first_event_goes_at_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = await batch_sizes(settings, monkeypatch, linger_s=0, events=5)

    assert sizes[0] == 1
    assert sum(sizes) == 5
