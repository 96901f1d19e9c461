"""``/readyz`` when a dependency hangs (accepts the connection, never answers) rather than
refusing: 503 naming it, within ``TRIPBOOK_READINESS_TIMEOUT_S``, not the client's own
(longer) timeouts. The other dependency is checked meanwhile and not named."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from tests.support.apps import Served, serving
from tests.support.coverage_silent_server import SilentServer
from tripbook.settings import Settings

READINESS_TIMEOUT_S = 1.0
# The clients' own timeouts, far above the readiness timeout: only it can end the wait.
CLIENT_TIMEOUT_S = 20.0
MARGIN_S = 1.5


@pytest.fixture
async def database_hangs(settings: Settings, hanging: SilentServer) -> AsyncIterator[Served]:
    async with serving(
        settings,
        database_url=hanging.url("postgresql+asyncpg", "/tripbook"),
        db_connect_timeout_s=CLIENT_TIMEOUT_S,
        readiness_timeout_s=READINESS_TIMEOUT_S,
    ) as served:
        yield served


@pytest.fixture
async def redis_hangs(settings: Settings, hanging: SilentServer) -> AsyncIterator[Served]:
    async with serving(
        settings,
        redis_url=hanging.url("redis", "/0"),
        redis_timeout_s=CLIENT_TIMEOUT_S,
        readiness_timeout_s=READINESS_TIMEOUT_S,
    ) as served:
        yield served


async def timed_readyz(served: Served) -> tuple[int, dict[str, object], float]:
    started = time.perf_counter()
    response = await served.client.get("/readyz")
    return response.status_code, response.json(), time.perf_counter() - started


async def test_a_hanging_database_is_named_within_the_readiness_timeout(
    database_hangs: Served, hanging: SilentServer
) -> None:
    status, body, waited = await timed_readyz(database_hangs)

    assert status == 503
    assert body == {"status": "unavailable", "failing": {"database": "TimeoutError"}}
    assert hanging.accepted >= 1  # reached, then silent: not a refused connection
    assert READINESS_TIMEOUT_S <= waited < READINESS_TIMEOUT_S + MARGIN_S


async def test_a_hanging_redis_is_named_within_the_readiness_timeout_and_degrades(
    redis_hangs: Served, hanging: SilentServer
) -> None:
    status, body, waited = await timed_readyz(redis_hangs)

    assert status == 200  # degraded, still serving: Redis never drains a pod
    assert body == {"status": "degraded", "degraded": {"redis": "TimeoutError"}}
    assert hanging.accepted >= 1
    assert hanging.received > 0  # it sent its command and got no answer
    assert READINESS_TIMEOUT_S <= waited < READINESS_TIMEOUT_S + MARGIN_S
