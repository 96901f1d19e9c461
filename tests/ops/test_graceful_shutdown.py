"""SIGTERM to a real gunicorn: readiness drops at once, in-flight requests finish, it exits.

The slow in-flight requests are seat holds waiting on a departure row that the test keeps
locked; releasing the lock lets them complete after the shutdown has begun.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests import environment
from tests.support.api import hold_body
from tests.support.factories import Factories
from tests.support.servers import run_gunicorn

pytestmark = pytest.mark.slow

IN_FLIGHT = 6
WORKERS = 2
GRACEFUL_TIMEOUT_S = 30
# How long /readyz says 503 before the workers stop listening: the probe below has all of
# it to see the 503, so a busy machine cannot make it miss the window.
SHUTDOWN_DELAY_S = 8


async def holds_waiting(observer: asyncpg.Connection, expected: int) -> bool:
    # Polled outside any transaction: inside one, pg_stat_activity is a frozen snapshot.
    count = await observer.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND application_name = 'tripbook'"
    )
    return int(count) >= expected


async def until(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)  # polling interval, not a stand-in for synchronisation


async def test_sigterm_drains_in_flight_requests(log_dir: Path, factories: Factories) -> None:
    account = await factories.account()
    departure = await factories.departure(seats=50)
    env = {
        "GUNICORN_GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT_S),
        "TRIPBOOK_SHUTDOWN_DELAY_S": str(SHUTDOWN_DELAY_S),
        "TRIPBOOK_DB_LOCK_TIMEOUT_MS": "20000",
    }
    blocker = await asyncpg.connect(environment.DATABASE_DSN)
    observer = await asyncpg.connect(environment.DATABASE_DSN)
    try:
        with run_gunicorn(log_dir, workers=WORKERS, env=env) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
                lock = blocker.transaction()
                await lock.start()
                await blocker.execute(
                    "SELECT 1 FROM departure WHERE id = $1 FOR UPDATE", departure.id
                )
                in_flight = [
                    asyncio.create_task(
                        http.post(
                            "/v1/reservations",
                            json=hold_body(departure.id, 1),
                            headers=account.headers,
                        )
                    )
                    for _ in range(IN_FLIGHT)
                ]
                await until(lambda: holds_waiting(observer, IN_FLIGHT), 15, "holds to block")

                signalled_at = time.monotonic()
                server.process.send_signal(signal.SIGTERM)
                readiness: list[int] = []

                async def not_ready() -> bool:
                    async with httpx.AsyncClient(base_url=server.url, timeout=5) as probe:
                        readiness.append((await probe.get("/readyz")).status_code)
                    return readiness[-1] == 503

                await until(not_ready, SHUTDOWN_DELAY_S, "/readyz to answer 503")
                # Draining, and not yet done: every request is still waiting on the lock.
                assert not any(request.done() for request in in_flight)
                await lock.rollback()
                responses = await asyncio.gather(*in_flight)
            exit_code = await asyncio.to_thread(server.process.wait, GRACEFUL_TIMEOUT_S + 5)
            stopped_after = time.monotonic() - signalled_at
        drained = [line for line in server.log_lines() if line.get("event") == "draining"]
    finally:
        await blocker.close()
        await observer.close()

    assert [r.status_code for r in responses] == [201] * IN_FLIGHT
    assert readiness[-1] == 503
    assert len(drained) == WORKERS  # each worker turned not-ready on its own SIGTERM
    assert exit_code == 0
    assert stopped_after < GRACEFUL_TIMEOUT_S
    assert await factories.seats_available(departure.id) == 50 - IN_FLIGHT
