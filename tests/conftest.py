"""The suite's world: real PostgreSQL and Redis, one migrated database per session.

Tests never skip for want of a service: if PostgreSQL or Redis does not answer, the run
stops at once with a message saying which and how to fix it.
"""

from __future__ import annotations

from tests import environment

environment.apply()  # before anything reads tripbook's settings

import asyncio  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
from collections.abc import AsyncIterator, Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402
import pytest  # noqa: E402
import structlog  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from pydantic import SecretStr  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker  # noqa: E402

from tests.support import world  # noqa: E402
from tests.support.apps import client_of, running  # noqa: E402
from tests.support.factories import Factories  # noqa: E402
from tripbook.settings import Settings  # noqa: E402


def _require(name: str, url: str, default_port: int) -> None:
    problem = world.unreachable(url, default_port)
    if problem:
        pytest.exit(
            f"{name} is {problem}. The suite needs real services and never skips: start it "
            f"(`.ci/run` does) and run again.",
            returncode=3,
        )


@pytest.fixture(scope="session", autouse=True)
def test_database() -> str:
    """Create and migrate the session's own database once; dev data is never touched."""
    _require("PostgreSQL", environment.PG_SERVER, 5432)
    _require("Redis", environment.REDIS_SERVER, 6379)
    asyncio.run(world.recreate_database(environment.DATABASE_URL))
    world.migrate(environment.DATABASE_URL)
    world.clear_redis_keys([environment.REDIS_URL, environment.BROKER_URL], environment.KEY_PREFIX)
    return environment.DATABASE_URL


@pytest.fixture(scope="session")
def settings(test_database: str) -> Settings:
    return Settings()


@pytest.fixture
def production_settings(settings: Settings) -> Settings:
    """``settings`` for ``env=production``, which refuses to start with the development secret."""
    return settings.model_copy(update={"env": "production", "jwt_secret": SecretStr("x" * 40)})


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    async with running(settings) as application:
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(app) as c:
        yield c


@pytest.fixture(scope="session")
def sessionmaker(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    maker: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    return maker


@pytest.fixture(scope="session")
def factories(app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]) -> Factories:
    return Factories(app=app, sessionmaker=sessionmaker)


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path


@pytest.fixture
def captured_logs(
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The JSON lines logged during the test, parsed: tripbook's own loggers write to
    ``sys.stdout`` (captured here by ``capsys``), the standard library's go through the root
    handler's formatter."""
    root = logging.getLogger()
    formatter = next(
        handler.formatter
        for handler in root.handlers
        if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter)
    )
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root.addHandler(handler)

    def lines() -> list[dict[str, Any]]:
        stream.write(capsys.readouterr().out)  # readouterr consumes: keep what it returned
        return [json.loads(line) for line in stream.getvalue().splitlines() if line]

    try:
        yield lines
    finally:
        root.removeHandler(handler)
