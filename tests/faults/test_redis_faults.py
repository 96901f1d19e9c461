"""Redis unreachable: the catalogue and seat holds still work, readiness says why not.

The trip cache is bypassed and the rate limiter fails open (logging
``rate_limit_unavailable``); PostgreSQL stays the source of truth. A broker outage is
``tests/workers/test_relay.py``'s business.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from tests.support.api import hold_body
from tests.support.apps import serving
from tests.support.factories import Factories
from tests.support.sandboxes import free_port
from tripbook.settings import Settings

Logs = Callable[[], list[dict[str, Any]]]
# Far above what a refused connection costs (redis_timeout_s is 0.5 s), far below a hang.
FAST_S = 5.0


@pytest.fixture
async def unreachable(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    # Nothing listens on a port the OS just handed out and took back. Built before
    # ``captured_logs`` is requested: create_app reconfigures logging.
    async with serving(
        settings, redis_url=f"redis://127.0.0.1:{free_port()}/0", rate_limit_enabled=True
    ) as served:
        yield served.client


def events(logs: Logs, name: str) -> list[dict[str, Any]]:
    return [line for line in logs() if line["event"] == name]


async def timed(request: Any) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response: httpx.Response = await request
    return response, time.perf_counter() - started


class TestRedisUnreachable:
    async def test_trip_search_and_detail_bypass_the_cache(
        self, unreachable: httpx.AsyncClient, captured_logs: Logs, factories: Factories
    ) -> None:
        departure = await factories.departure(seats=12, origin="Faro", destination="Braga")

        search, search_s = await timed(
            unreachable.get("/v1/trips", params={"origin": "Faro", "destination": "Braga"})
        )
        detail, detail_s = await timed(unreachable.get(f"/v1/trips/{departure.trip_id}"))

        assert search.status_code == 200
        assert departure.trip_id in {item["id"] for item in search.json()["items"]}
        assert detail.status_code == 200, detail.text
        assert detail.json()["id"] == departure.trip_id
        assert max(search_s, detail_s) < FAST_S
        assert events(captured_logs, "trip_cache_unavailable")
        assert {line["scope"] for line in events(captured_logs, "rate_limit_unavailable")} == {
            "default"
        }

    async def test_seats_are_still_held(
        self, unreachable: httpx.AsyncClient, captured_logs: Logs, factories: Factories
    ) -> None:
        departure = await factories.departure(seats=12)
        account = await factories.account()

        held, held_s = await timed(
            unreachable.post(
                "/v1/reservations", json=hold_body(departure.id, 3), headers=account.headers
            )
        )
        detail = await unreachable.get(f"/v1/trips/{departure.trip_id}")

        assert held.status_code == 201, held.text
        assert held.json()["status"] == "held"
        assert held_s < FAST_S
        assert await factories.seats_available(departure.id) == 9
        # With no cache in the way, the detail shows the hold at once.
        seats = {d["id"]: d["seats_available"] for d in detail.json()["departures"]}
        assert seats[departure.id] == 9
        limited = events(captured_logs, "rate_limit_unavailable")
        assert {line["scope"] for line in limited} >= {"default", "reservations"}
        assert {line["level"] for line in limited} == {"warning"}
        assert not events(captured_logs, "unhandled_exception")

    async def test_readiness_degrades_on_redis(self, unreachable: httpx.AsyncClient) -> None:
        response, elapsed = await timed(unreachable.get("/readyz"))

        assert response.status_code == 200  # degraded, not drained
        assert response.json()["status"] == "degraded"
        assert set(response.json()["degraded"]) == {"redis"}
        assert elapsed < FAST_S
