"""Dependencies every domain uses: settings, the request's session, the engine, Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Path, Request
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tripbook.core.db import MAX_BIGINT, unit_of_work
from tripbook.settings import Settings


# async def, though they do no I/O: a plain def dependency runs in the thread pool, and
# that hop on every request cost ~10% of worker CPU on seat holds (py-spy).
async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    return sessionmaker


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with unit_of_work(await get_sessionmaker(request)) as session:
        yield session


async def get_engine(request: Request) -> AsyncEngine:
    engine: AsyncEngine = request.app.state.engine
    return engine


async def get_redis(request: Request) -> Redis:
    redis: Redis = request.app.state.redis
    return redis


SettingsDep = Annotated[Settings, Depends(get_settings)]
# scope="function": the commit happens before the response is sent, so a client never
# sees 201 for a transaction that then failed to commit.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
# For a route that needs a unit of work only on some paths (it opens one itself).
SessionmakerDep = Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)]
EngineDep = Annotated[AsyncEngine, Depends(get_engine)]
RedisDep = Annotated[Redis, Depends(get_redis)]
# Ids beyond PostgreSQL's bigint would otherwise overflow the driver and become a 500.
IdPath = Annotated[int, Path(ge=1, le=MAX_BIGINT)]
