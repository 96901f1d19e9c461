"""``fetch_one_on_driver``: a statement that skips SQLAlchemy, yet fails as SQLAlchemy does."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tests import environment
from tests.support.workers import eventually
from tripbook.core.db import (
    DriverStatement,
    autocommit,
    create_engine,
    fetch_one_on_driver,
    in_autocommit,
    is_transient,
)
from tripbook.settings import Settings

DIVIDE = DriverStatement.compile(
    text("SELECT CAST(:numerator AS int) / CAST(:denominator AS int) AS quotient, :label AS label")
)


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """One pooled connection, so "the next checkout" is the connection under test."""
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    yield engine
    await engine.dispose()


@pytest.fixture
async def admin() -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(environment.DATABASE_DSN)
    yield connection
    await connection.close()


async def backend_pid(connection: AsyncConnection) -> int:
    return int(await connection.scalar(select(func.pg_backend_pid())))


async def pooled_backend_pid(engine: AsyncEngine) -> int:
    async with autocommit(engine) as connection:
        return await backend_pid(connection)


async def test_parameters_are_passed_by_name(engine: AsyncEngine) -> None:
    async with autocommit(engine) as connection:
        record = await fetch_one_on_driver(
            connection, DIVIDE, {"label": "six by two", "denominator": 2, "numerator": 6}
        )

    assert DIVIDE.parameters == ("numerator", "denominator", "label")
    assert record is not None
    assert dict(record) == {"quotient": 3, "label": "six by two"}


async def test_only_autocommit_connections_count_as_autocommit(engine: AsyncEngine) -> None:
    async with autocommit(engine) as connection:
        assert in_autocommit(connection)
    async with engine.begin() as connection:
        assert not in_autocommit(connection)


async def test_a_statement_error_is_a_dbapi_error_and_the_connection_stays(
    engine: AsyncEngine,
) -> None:
    pid = await pooled_backend_pid(engine)
    async with autocommit(engine) as connection:
        with pytest.raises(DBAPIError) as raised:
            await fetch_one_on_driver(
                connection, DIVIDE, {"numerator": 1, "denominator": 0, "label": "secret"}
            )

    assert isinstance(raised.value.orig, asyncpg.DivisionByZeroError)
    assert raised.value.orig.sqlstate == "22012"
    assert not is_transient(raised.value)  # a bug, answered 500, never "retry"
    assert not raised.value.connection_invalidated
    assert "secret" not in str(raised.value)  # parameters stay out of logs
    assert await pooled_backend_pid(engine) == pid


async def test_a_lost_connection_is_transient_and_never_pooled_again(
    engine: AsyncEngine, admin: asyncpg.Connection
) -> None:
    async with autocommit(engine) as connection:
        pid = await backend_pid(connection)
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        await eventually(driver.is_closed, timeout_s=5, what="asyncpg to see the socket close")
        with pytest.raises(DBAPIError) as raised:
            await fetch_one_on_driver(
                connection, DIVIDE, {"numerator": 1, "denominator": 1, "label": ""}
            )

    assert raised.value.connection_invalidated
    assert is_transient(raised.value)  # answered 503 + Retry-After
    assert await pooled_backend_pid(engine) != pid


async def test_a_cancelled_statement_leaves_no_half_used_connection_in_the_pool(
    engine: AsyncEngine, admin: asyncpg.Connection
) -> None:
    sleep = DriverStatement.compile(text("SELECT pg_sleep(:seconds)"))
    async with autocommit(engine) as connection:
        pid = await backend_pid(connection)
        running = asyncio.create_task(fetch_one_on_driver(connection, sleep, {"seconds": 30}))

        async def sleeping() -> bool:
            query = "SELECT wait_event = 'PgSleep' FROM pg_stat_activity WHERE pid = $1"
            return bool(await admin.fetchval(query, pid))

        await eventually(sleeping, timeout_s=5, what="the statement to run")
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

    assert await pooled_backend_pid(engine) != pid
