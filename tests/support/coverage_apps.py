"""An in-process tripbook built with a few settings changed, and the HTTP client to call it.

Like the suite's ``app`` / ``client`` fixtures (tests/conftest.py), with its own engine, pool,
Redis client and relay, so a test can shrink a pool, a timeout or point a dependency
elsewhere without touching the shared app. ``create_app`` reconfigures logging: build it
before ``captured_logs`` is set up (request that fixture after the one using this).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import FastAPI

from tripbook.main import create_app
from tripbook.settings import Settings


@dataclass(frozen=True, slots=True)
class Served:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def settings(self) -> Settings:
        settings: Settings = self.app.state.settings
        return settings


@asynccontextmanager
async def serving(settings: Settings, **changes: Any) -> AsyncIterator[Served]:
    """tripbook with ``settings`` updated by ``changes``, started, and a client of it."""
    app = create_app(settings.model_copy(update=changes))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://tripbook.test") as client,
    ):
        yield Served(app=app, client=client)
