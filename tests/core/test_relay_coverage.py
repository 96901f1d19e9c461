"""``TRIPBOOK_RELAY_PUBLISH_TIMEOUT_S``: a broker that accepts the connection and never
answers costs the relay one timeout, never the request; the event stays for the sweep."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select

from tests.support.api import hold_body
from tests.support.apps import Served, serving
from tests.support.coverage_silent_server import SilentServer
from tests.support.factories import Factories
from tests.support.workers import eventually
from tripbook.core.outbox import OutboxEvent
from tripbook.settings import Settings

PUBLISH_TIMEOUT_S = 1.0
# Scheduling slack on a busy 2-core machine, on top of the one timeout a publish may cost.
MARGIN_S = 1.0


@pytest.fixture
async def hung(settings: Settings, hanging: SilentServer) -> AsyncIterator[Served]:
    async with serving(
        settings,
        broker_url=hanging.url("redis", "/1"),
        relay_publish_timeout_s=PUBLISH_TIMEOUT_S,
    ) as served:
        yield served


async def events_of(factories: Factories, request_id: str) -> list[OutboxEvent]:
    async with factories.sessionmaker() as session:
        result = await session.scalars(
            select(OutboxEvent).where(OutboxEvent.request_id == request_id)
        )
        return list(result)


async def test_a_silent_broker_costs_one_publish_timeout_and_never_the_request(
    hung: Served, hanging: SilentServer, factories: Factories
) -> None:
    account = await factories.account()
    departure = await factories.departure(seats=4)
    request_id = f"relay-hang-{uuid.uuid4().hex}"

    started = time.perf_counter()
    response = await hung.client.post(
        "/v1/reservations",
        json=hold_body(departure.id, 1),
        headers={**account.headers, "X-Request-ID": request_id},
    )
    answered = time.perf_counter() - started

    assert response.status_code == 201, response.text
    # The response never waits for the broker: well within even one publish timeout.
    assert answered < PUBLISH_TIMEOUT_S
    # While the publish hangs, the API goes on serving as usual.
    started_detail = time.perf_counter()
    detail = await hung.client.get(f"/v1/trips/{departure.trip_id}")
    assert time.perf_counter() - started_detail < PUBLISH_TIMEOUT_S
    assert detail.status_code == 200
    assert detail.json()["departures"][0]["seats_available"] == 3

    async def gave_up() -> list[OutboxEvent] | None:
        events = await events_of(factories, request_id)
        return events if events and all(event.last_error for event in events) else None

    [event] = await eventually(gave_up, timeout_s=20, what="the relay to give up the publish")
    gave_up_after = time.perf_counter() - started

    # The broker really was reached and really kept quiet (not a refused connection).
    assert hanging.accepted >= 1
    assert hanging.received > 0
    assert event.task == "email.send"
    assert event.payload["reservation_id"] == response.json()["id"]
    assert (event.published_at, event.publish_attempts) == (None, 1)
    assert event.last_error is not None
    assert "Timeout" in event.last_error
    # One timeout bounded it: the publish neither failed at once nor waited much longer.
    assert PUBLISH_TIMEOUT_S <= gave_up_after < PUBLISH_TIMEOUT_S + MARGIN_S
