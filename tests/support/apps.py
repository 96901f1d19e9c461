"""tripbook in-process: built with some settings changed, started, and an HTTP client of it.

The suite's ``app`` / ``client`` fixtures (tests/conftest.py) come from here, and so does
every app a test builds for itself: with its own engine, pool, Redis client and relay, a
test can shrink a pool, a timeout or point a dependency elsewhere without touching the
shared app. ``create_app`` reconfigures logging: build an app before ``captured_logs`` is
set up (request that fixture after the one using this).
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

BASE_URL = "http://tripbook.test"


@dataclass(frozen=True, slots=True)
class Served:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def settings(self) -> Settings:
        settings: Settings = self.app.state.settings
        return settings


@asynccontextmanager
async def running(settings: Settings, **changes: Any) -> AsyncIterator[FastAPI]:
    """tripbook with ``settings`` updated by ``changes``, its lifespan started."""
    app = create_app(settings.model_copy(update=changes) if changes else settings)
    async with app.router.lifespan_context(app):
        yield app


def client_of(
    app: FastAPI, *, peer: str = "127.0.0.1", raise_app_exceptions: bool = True
) -> httpx.AsyncClient:
    """A client calling ``app`` in-process, to use in ``async with``. ``peer``: the client
    address the app sees; ``raise_app_exceptions=False``: an unexpected error is answered
    (500), not raised in the test."""
    transport = httpx.ASGITransport(
        app=app, raise_app_exceptions=raise_app_exceptions, client=(peer, 123)
    )
    return httpx.AsyncClient(transport=transport, base_url=BASE_URL)


@asynccontextmanager
async def serving(
    settings: Settings, *, raise_app_exceptions: bool = True, **changes: Any
) -> AsyncIterator[Served]:
    """tripbook with ``settings`` updated by ``changes``, started, and a client of it."""
    async with (
        running(settings, **changes) as app,
        client_of(app, raise_app_exceptions=raise_app_exceptions) as client,
    ):
        yield Served(app=app, client=client)
