"""Transient database failures, provoked for real, answer 503 problem+json with Retry-After.

Each one goes through a seat hold (``POST /v1/reservations``), the statement that locks a
departure row, against an app whose pool or timeouts are shrunk for the purpose; a raw
connection plays "someone else" holding a row lock. Afterwards nothing of the refused
request is in the database: no reservation, no seat taken, no outbox row with its id.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import func, select

from tests import environment
from tests.support.api import hold_body
from tests.support.apps import Served, serving
from tests.support.factories import Account, Factories
from tests.support.problems import assert_problem
from tests.support.workers import eventually
from tripbook.core.outbox import OutboxEvent
from tripbook.settings import Settings
from tripbook.trips.models import Departure

Logs = Callable[[], list[dict[str, Any]]]
SEATS = 10
# Long enough that only the failure under test can end a statement.
PATIENT_MS = 30_000
# Above any scheduling hiccup on a busy 2-core machine, far below PATIENT_MS.
MARGIN_S = 2.0
BLOCKED_BY = "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))"


@pytest.fixture
async def blocker() -> AsyncIterator[asyncpg.Connection]:
    """Someone else's connection: takes row locks inside its own transaction."""
    connection = await asyncpg.connect(environment.DATABASE_DSN)
    yield connection
    await connection.close()


@pytest.fixture
async def admin() -> AsyncIterator[asyncpg.Connection]:
    """Watches who waits for whom (its own snapshot at every statement)."""
    connection = await asyncpg.connect(environment.DATABASE_DSN)
    yield connection
    await connection.close()


async def waiting_for(admin: asyncpg.Connection, blocker: asyncpg.Connection) -> bool:
    """Whether some session is waiting for a lock ``blocker`` holds."""
    return bool(await admin.fetchval(BLOCKED_BY, blocker.get_server_pid()))


async def hold(
    served: Served, account: Account, departure: Departure, request_id: str
) -> httpx.Response:
    return await served.client.post(
        "/v1/reservations",
        json=hold_body(departure.id, 2),
        headers={**account.headers, "X-Request-ID": request_id},
    )


def assert_unavailable(response: httpx.Response) -> None:
    body = assert_problem(response, 503)
    assert body["code"] == "UNAVAILABLE"
    assert body["title"] == "Temporarily unavailable"
    assert response.headers["retry-after"] == "1"


async def assert_untouched(factories: Factories, departure: Departure, request_id: str) -> None:
    assert await factories.reservations(departure.id) == []
    assert await factories.seats_available(departure.id) == SEATS
    async with factories.sessionmaker() as session:
        events = await session.scalar(
            select(func.count()).where(OutboxEvent.request_id == request_id)
        )
    assert events == 0


def unavailable_logged(logs: Logs, request_id: str) -> dict[str, Any]:
    [line] = [
        line
        for line in logs()
        if line["event"] == "database_unavailable" and line.get("request_id") == request_id
    ]
    return line


def request_id() -> str:
    return f"dberr-{uuid.uuid4().hex}"


class TestPoolExhausted:
    @pytest.fixture
    async def one_connection(self, settings: Settings) -> AsyncIterator[Served]:
        async with serving(
            settings,
            db_pool_size=1,
            db_max_overflow=0,
            db_pool_timeout_s=0.2,
            db_lock_timeout_ms=PATIENT_MS,
            db_statement_timeout_ms=PATIENT_MS,
        ) as served:
            yield served

    async def test_no_free_connection_within_the_pool_timeout_is_503(
        self,
        one_connection: Served,
        captured_logs: Logs,
        factories: Factories,
        blocker: asyncpg.Connection,
        admin: asyncpg.Connection,
    ) -> None:
        account = await factories.account()
        locked = await factories.departure(seats=SEATS)
        other = await factories.departure(seats=SEATS)
        refused_id = request_id()

        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("SELECT 1 FROM departure WHERE id = $1 FOR UPDATE", locked.id)
        # The pool's only connection is taken by a hold waiting for that lock.
        first = asyncio.create_task(hold(one_connection, account, locked, request_id()))
        try:
            await eventually(
                lambda: waiting_for(admin, blocker), what="the first hold to wait for the lock"
            )
            started = time.perf_counter()
            refused = await hold(one_connection, account, other, refused_id)
            waited = time.perf_counter() - started
            still_waiting = not first.done()
        finally:
            await transaction.rollback()
            held = await first

        assert still_waiting
        assert_unavailable(refused)
        pool_timeout = one_connection.settings.db_pool_timeout_s
        assert pool_timeout <= waited < pool_timeout + MARGIN_S
        assert unavailable_logged(captured_logs, refused_id)["error"] == "TimeoutError"
        await assert_untouched(factories, other, refused_id)
        # The request that had the connection finished normally once the lock was gone.
        assert held.status_code == 201, held.text
        assert [r.id for r in await factories.reservations(locked.id)] == [
            uuid.UUID(held.json()["id"])
        ]


class TestStatementTimeout:
    @pytest.fixture
    async def short_statements(self, settings: Settings) -> AsyncIterator[Served]:
        # lock_timeout far above statement_timeout: the wait ends as a statement timeout.
        async with serving(
            settings, db_statement_timeout_ms=500, db_lock_timeout_ms=PATIENT_MS
        ) as served:
            yield served

    async def test_a_statement_running_past_statement_timeout_is_503(
        self,
        short_statements: Served,
        captured_logs: Logs,
        factories: Factories,
        blocker: asyncpg.Connection,
    ) -> None:
        account = await factories.account()
        departure = await factories.departure(seats=SEATS)
        refused_id = request_id()

        async with blocker.transaction():
            await blocker.execute("SELECT 1 FROM departure WHERE id = $1 FOR UPDATE", departure.id)
            started = time.perf_counter()
            response = await hold(short_statements, account, departure, refused_id)
            waited = time.perf_counter() - started

        assert_unavailable(response)
        statement_timeout = short_statements.settings.db_statement_timeout_ms / 1000
        assert statement_timeout <= waited < statement_timeout + MARGIN_S
        # 57014 query_canceled: the statement timeout, not the lock timeout (55P03).
        assert unavailable_logged(captured_logs, refused_id)["sqlstate"] == "57014"
        await assert_untouched(factories, departure, refused_id)


class TestDeadlock:
    @pytest.fixture
    async def patient(self, settings: Settings) -> AsyncIterator[Served]:
        # Neither timeout may end the wait first: only PostgreSQL's deadlock detector.
        async with serving(
            settings, db_statement_timeout_ms=PATIENT_MS, db_lock_timeout_ms=PATIENT_MS
        ) as served:
            yield served

    async def test_a_hold_caught_in_a_deadlock_is_503(
        self,
        patient: Served,
        captured_logs: Logs,
        factories: Factories,
        blocker: asyncpg.Connection,
        admin: asyncpg.Connection,
    ) -> None:
        """The hold locks the departure, then (checking the reservation's foreign key)
        needs a share lock on the customer's row; the other session holds that row and
        then asks for the departure: a cycle. The other session waits far longer than
        the server's ``deadlock_timeout`` before checking, so the hold is the victim."""
        account = await factories.account()
        departure = await factories.departure(seats=SEATS)
        refused_id = request_id()

        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("SET LOCAL deadlock_timeout = '60s'")
        await blocker.execute("SELECT 1 FROM user_account WHERE id = $1 FOR UPDATE", account.id)
        answer = asyncio.create_task(hold(patient, account, departure, refused_id))
        try:
            await eventually(
                lambda: waiting_for(admin, blocker), what="the hold to wait for the user row"
            )
            # The cycle closes here; this returns once the hold has been rolled back.
            await blocker.execute("SELECT 1 FROM departure WHERE id = $1 FOR UPDATE", departure.id)
        finally:
            await transaction.rollback()
            response = await answer

        assert_unavailable(response)
        # 40P01 deadlock_detected, raised by PostgreSQL in the hold's session.
        assert unavailable_logged(captured_logs, refused_id)["sqlstate"] == "40P01"
        await assert_untouched(factories, departure, refused_id)
