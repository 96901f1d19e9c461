"""The "seats held" ping: sent after the response by a BackgroundTask, never a failure."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from tests.support.factories import Factories
from tests.support.sandboxes import PaymentSandbox, free_port, run_payment_sandbox
from tripbook.main import create_app
from tripbook.settings import Settings


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaymentSandbox]:
    """Any HTTP server that records X-Request-ID will do: the payment sandbox does."""
    with run_payment_sandbox(tmp_path_factory.mktemp("webhook")) as sandbox:
        yield sandbox


@asynccontextmanager
async def client_with_webhook(settings: Settings, url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update={"notify_webhook_url": url}))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://tripbook.test"
        ) as client,
    ):
        yield client


# Built before ``captured_logs`` (fixtures are set up in argument order): creating an app
# configures logging afresh, which would drop the capturing handler.
@pytest.fixture
async def pinging_client(
    settings: Settings, receiver: PaymentSandbox
) -> AsyncIterator[httpx.AsyncClient]:
    async with client_with_webhook(settings, f"{receiver.url}/hooks/seats-held") as client:
        yield client


@pytest.fixture
async def unreachable_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with client_with_webhook(settings, f"http://127.0.0.1:{free_port()}/") as client:
        yield client


async def book(client: httpx.AsyncClient, factories: Factories, request_id: str) -> int:
    account = await factories.account()
    departure = await factories.departure()
    response = await client.post(
        "/v1/reservations",
        json={"departure_id": departure.id, "seats": 1, "passengers": [{"full_name": "A"}]},
        headers={**account.headers, "X-Request-ID": request_id},
    )
    return response.status_code


class TestSeatsHeldPing:
    async def test_sent_with_the_request_id(
        self,
        pinging_client: httpx.AsyncClient,
        factories: Factories,
        receiver: PaymentSandbox,
        captured_logs: Callable[[], list[dict[str, Any]]],
    ) -> None:
        request_id = f"ping-{uuid.uuid4().hex}"

        status = await book(pinging_client, factories, request_id)

        assert status == 201
        assert request_id in receiver.stats()["last_request_ids"]
        # The sandbox has no such route: a 404, logged and swallowed.
        [failure] = [
            line
            for line in captured_logs()
            if line["event"] == "webhook_ping_failed" and line.get("request_id") == request_id
        ]
        assert "404" in failure["error"]

    async def test_an_unreachable_receiver_never_fails_the_booking(
        self,
        unreachable_client: httpx.AsyncClient,
        factories: Factories,
        captured_logs: Callable[[], list[dict[str, Any]]],
    ) -> None:
        request_id = f"ping-{uuid.uuid4().hex}"

        status = await book(unreachable_client, factories, request_id)

        assert status == 201
        assert any(
            line["event"] == "webhook_ping_failed" and line.get("request_id") == request_id
            for line in captured_logs()
        )
