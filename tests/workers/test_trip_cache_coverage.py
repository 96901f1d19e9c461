"""The cached trip detail (``GET /v1/trips/{id}``, live ``seats_available``) is invalidated
whenever seats go back: a cancel (the API), an expiry sweep and a declined payment (both in
a real worker).

The API here caches for ``CACHE_TTL_S``, far longer than any wait in these tests, so fresh
seats can only come from an invalidation, never from the entry running out.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from celery import Celery

from tests.support.apps import Served, serving
from tests.support.booking import Booking, expire_now
from tests.support.sandboxes import PaymentSandbox
from tests.support.workers import CeleryProcess, eventually
from tripbook.settings import Settings
from tripbook.trips import cache
from tripbook.trips.models import Departure

pytestmark = pytest.mark.slow

CACHE_TTL_S = 300
SEATS = 10
# Below the worker's gateway timeout: the charge is answered (declined), only late.
GATEWAY_LATENCY_S = 2.0


@pytest.fixture
async def long_cache(settings: Settings) -> AsyncIterator[Served]:
    async with serving(settings, trip_cache_ttl_s=CACHE_TTL_S) as served:
        yield served


@pytest.fixture
def cached_booking(long_cache: Served, booking: Booking) -> Booking:
    """The customer's flow through the long-caching API."""
    return Booking(long_cache.client, booking.factories, booking.sessionmaker)


async def seats_shown(served: Served, departure: Departure) -> int:
    response = await served.client.get(f"/v1/trips/{departure.trip_id}")
    assert response.status_code == 200, response.text
    [shown] = response.json()["departures"]
    return int(shown["seats_available"])


async def assert_cached(served: Served, departure: Departure, seats: int) -> None:
    """The detail is in Redis with ``seats``, for the long TTL: later reads get it from there."""
    redis, key = served.app.state.redis, cache.trip_key(served.settings, departure.trip_id)
    cached = await redis.get(key)
    assert cached is not None
    assert json.loads(cached)["departures"][0]["seats_available"] == seats
    assert await redis.ttl(key) > CACHE_TTL_S - 60


async def shows_fresh_seats(served: Served, departure: Departure, seats: int) -> None:
    """Polled: a worker invalidates after its commit, which may come just after the
    status the test waited for is visible."""

    async def fresh() -> bool:
        return await seats_shown(served, departure) == seats

    await eventually(fresh, timeout_s=20, what=f"the detail to show {seats} seats")


async def test_cancel_invalidates_the_cached_detail(
    long_cache: Served, cached_booking: Booking
) -> None:
    account, departure = await cached_booking.customer_and_departure(seats=SEATS)
    held = await cached_booking.hold(account, departure.id, seats=2)
    assert await seats_shown(long_cache, departure) == SEATS - 2
    await assert_cached(long_cache, departure, SEATS - 2)

    cancelled = await long_cache.client.post(
        f"/v1/reservations/{held['id']}/cancel", headers=account.headers
    )

    assert cancelled.status_code == 200, cancelled.text
    # In the API itself: invalidated by the time the cancel has answered.
    assert await seats_shown(long_cache, departure) == SEATS


async def test_expiry_sweep_invalidates_the_cached_detail(
    worker: CeleryProcess, long_cache: Served, cached_booking: Booking, broker: Celery
) -> None:
    account, departure = await cached_booking.customer_and_departure(seats=SEATS)
    held = await cached_booking.hold(account, departure.id, seats=3)
    await expire_now(cached_booking, held["id"])
    assert await seats_shown(long_cache, departure) == SEATS - 3
    await assert_cached(long_cache, departure, SEATS - 3)

    broker.send_task("maintenance.expire_holds", queue="maintenance")

    await cached_booking.wait_for_status(held["id"], "expired")
    await shows_fresh_seats(long_cache, departure, SEATS)


async def test_declined_payment_invalidates_the_cached_detail(
    worker: CeleryProcess,
    long_cache: Served,
    cached_booking: Booking,
    payment_sandbox: PaymentSandbox,
) -> None:
    account, departure = await cached_booking.customer_and_departure(seats=SEATS)
    held = await cached_booking.hold(account, departure.id, seats=2)
    assert await seats_shown(long_cache, departure) == SEATS - 2

    # The gateway's answer takes a while, so the entry is seen cached after the payment
    # was accepted (the API's part did not drop it) and before the decline.
    payment_sandbox.set_latency(GATEWAY_LATENCY_S)
    try:
        await cached_booking.pay(account, held["id"], "tok_decline")
        await assert_cached(long_cache, departure, SEATS - 2)

        await cached_booking.wait_for_status(held["id"], "payment_failed")
    finally:
        payment_sandbox.set_latency(0)
    await shows_fresh_seats(long_cache, departure, SEATS)
