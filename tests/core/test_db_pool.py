"""The pool's liveness check at checkout: no round trip, yet no dead connection handed out."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from tests import environment
from tests.support.workers import eventually
from tripbook.core.db import create_engine
from tripbook.settings import Settings


async def backend_pid_and_connection(engine: AsyncEngine) -> tuple[int, asyncpg.Connection]:
    async with engine.connect() as connection:
        pid = await connection.scalar(select(func.pg_backend_pid()))
        raw = await connection.get_raw_connection()
        return int(pid), raw.driver_connection


async def test_a_connection_the_server_closed_is_replaced_at_checkout(settings: Settings) -> None:
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    try:
        pid, driver = await backend_pid_and_connection(engine)
        admin = await asyncpg.connect(environment.DATABASE_DSN)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        await eventually(driver.is_closed, timeout_s=5, what="asyncpg to see the socket close")

        # The one pooled connection is dead; without the check this statement would fail.
        new_pid, _ = await backend_pid_and_connection(engine)

        assert new_pid != pid
    finally:
        await engine.dispose()


async def test_checkout_sends_nothing_to_the_server(settings: Settings) -> None:
    """pool_pre_ping on asyncpg costs BEGIN, ";" and ROLLBACK per checkout; ours costs none."""
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    admin = await asyncpg.connect(environment.DATABASE_DSN)
    last_activity = "SELECT state_change FROM pg_stat_activity WHERE pid = $1"
    try:
        pid, _ = await backend_pid_and_connection(engine)
        before = await admin.fetchval(last_activity, pid)

        for _ in range(5):
            async with engine.connect():
                pass  # a checkout and a checkin, no statement

        assert await admin.fetchval(last_activity, pid) == before
    finally:
        await admin.close()
        await engine.dispose()


async def test_errors_never_carry_a_statements_parameters(settings: Settings) -> None:
    """A failing statement's error (and so any log line of it) does not list its parameter
    values: one could be a password hash, a token or a customer's name."""
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    secret = "argon2-hash-that-must-not-leak"
    try:
        async with engine.connect() as connection:
            # PostgreSQL fails the statement after binding the parameter.
            failing = text("SELECT CAST(:value AS text) || CAST(1 / 0 AS text)")
            with pytest.raises(DBAPIError) as raised:
                await connection.execute(failing, {"value": secret})
    finally:
        await engine.dispose()

    assert secret not in str(raised.value)
    assert "parameters hidden" in str(raised.value)
