"""What a worker process shares across its tasks: one event loop, engine, relay and clients.

Created once per process (``worker_process_init`` in a prefork child, or on first use in
a solo worker), never per task: asyncpg connections belong to the loop that opened them,
so every task of the process runs its coroutine on this one loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tripbook.core.db import create_engine, create_sessionmaker
from tripbook.core.redis import create_redis
from tripbook.core.relay import OutboxRelay
from tripbook.payments.gateway import HttpPaymentGateway
from tripbook.payments.reconciliation import Payments
from tripbook.settings import Settings, get_settings

T = TypeVar("T")


@dataclass
class Runtime:
    settings: Settings
    loop: asyncio.AbstractEventLoop
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: Redis
    relay: OutboxRelay
    http: httpx.AsyncClient
    payments: Payments

    async def aclose(self) -> None:
        await self.relay.aclose()
        await self.http.aclose()
        await self.redis.aclose()
        await self.engine.dispose()


_runtime: Runtime | None = None


def start(settings: Settings | None = None) -> Runtime:
    global _runtime
    if _runtime is not None:
        return _runtime
    settings = settings or get_settings()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    # One task at a time per process: a couple of connections is all it ever uses.
    engine = create_engine(settings, pool_size=2, max_overflow=2)
    sessionmaker = create_sessionmaker(engine)
    http = HttpPaymentGateway.create_client(settings)
    _runtime = Runtime(
        settings=settings,
        loop=loop,
        engine=engine,
        sessionmaker=sessionmaker,
        redis=create_redis(settings),
        relay=OutboxRelay(settings, engine),
        http=http,
        payments=Payments(sessionmaker, HttpPaymentGateway(http), settings),
    )
    return _runtime


def stop() -> None:
    global _runtime
    if _runtime is None:
        return
    runtime, _runtime = _runtime, None
    try:
        runtime.loop.run_until_complete(runtime.aclose())
    finally:
        runtime.loop.close()


def current() -> Runtime:
    return _runtime or start()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a task's coroutine to completion on the process's loop."""
    return current().loop.run_until_complete(coroutine)
