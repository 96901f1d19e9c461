"""The "seats held" ping: sent after the response by a BackgroundTask, never a failure.

The receiver is a real HTTP server in a thread of the test process that records each
request (tests/support/behaviour_http_receiver.py). In-process, httpx's ASGI transport
returns only once the app's background tasks are done, so the ping has been answered by
the time ``client.post`` returns; under gunicorn the response goes first.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.apps import serving
from tests.support.behaviour_http_receiver import HttpReceiver, ReceivedRequest, run_http_receiver
from tests.support.factories import Factories
from tests.support.sandboxes import free_port
from tests.support.servers import Gunicorn, run_gunicorn
from tests.support.workers import eventually
from tripbook.settings import Settings

HANG_TIMEOUT_S = 2.0
# Log timestamps and the receiver's clock are both wall time, read by different processes.
CLOCK_SLACK_S = 0.05


@pytest.fixture(scope="module")
def receiver() -> Iterator[HttpReceiver]:
    with run_http_receiver() as running:
        yield running


@asynccontextmanager
async def client_with_webhook(settings: Settings, url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(settings, notify_webhook_url=url) as served:
        yield served.client


# Built before ``captured_logs`` (fixtures are set up in argument order): creating an app
# configures logging afresh, which would drop the capturing handler.
@pytest.fixture
async def pinging_client(
    settings: Settings, receiver: HttpReceiver
) -> AsyncIterator[httpx.AsyncClient]:
    async with client_with_webhook(settings, f"{receiver.url}/hooks/seats-held") as client:
        yield client


@pytest.fixture
async def refused_client(
    settings: Settings, receiver: HttpReceiver
) -> AsyncIterator[httpx.AsyncClient]:
    async with client_with_webhook(settings, f"{receiver.url}/status/404") as client:
        yield client


@pytest.fixture
async def unreachable_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with client_with_webhook(settings, f"http://127.0.0.1:{free_port()}/") as client:
        yield client


async def book(
    client: httpx.AsyncClient, factories: Factories, request_id: str, seats: int = 1
) -> tuple[httpx.Response, int]:
    """Hold ``seats`` on a new departure; the response and the departure's id."""
    account = await factories.account()
    departure = await factories.departure()
    response = await client.post(
        "/v1/reservations",
        json={
            "departure_id": departure.id,
            "seats": seats,
            "passengers": [{"full_name": f"P{n}"} for n in range(seats)],
        },
        headers={**account.headers, "X-Request-ID": request_id},
    )
    return response, departure.id


def pings(receiver: HttpReceiver, request_id: str) -> list[ReceivedRequest]:
    return [r for r in receiver.requests() if r.headers.get("x-request-id") == request_id]


def logged(lines: list[dict[str, Any]], event: str, request_id: str) -> list[dict[str, Any]]:
    return [
        line
        for line in lines
        if line.get("event") == event and line.get("request_id") == request_id
    ]


class TestSeatsHeldPing:
    async def test_posts_the_hold_as_json_with_the_request_id(
        self,
        pinging_client: httpx.AsyncClient,
        factories: Factories,
        receiver: HttpReceiver,
        captured_logs: Callable[[], list[dict[str, Any]]],
    ) -> None:
        request_id = f"ping-{uuid.uuid4().hex}"

        response, departure_id = await book(pinging_client, factories, request_id, seats=2)

        assert response.status_code == 201, response.text
        [ping] = pings(receiver, request_id)
        assert (ping.method, ping.path) == ("POST", "/hooks/seats-held")
        assert ping.headers["content-type"] == "application/json"
        assert ping.json() == {
            "event": "seats_held",
            "reservation_id": response.json()["id"],
            "departure_id": departure_id,
            "seats": 2,
        }
        lines = captured_logs()
        [sent] = logged(lines, "webhook_ping_sent", request_id)
        assert sent["reservation_id"] == response.json()["id"]
        assert logged(lines, "webhook_ping_failed", request_id) == []

    async def test_a_refusing_receiver_never_fails_the_booking(
        self,
        refused_client: httpx.AsyncClient,
        factories: Factories,
        receiver: HttpReceiver,
        captured_logs: Callable[[], list[dict[str, Any]]],
    ) -> None:
        request_id = f"ping-{uuid.uuid4().hex}"

        response, _ = await book(refused_client, factories, request_id)

        assert response.status_code == 201
        assert len(pings(receiver, request_id)) == 1  # sent once, never retried
        [failure] = logged(captured_logs(), "webhook_ping_failed", request_id)
        assert failure["level"] == "warning"
        assert "404" in failure["error"]

    async def test_an_unreachable_receiver_never_fails_the_booking(
        self,
        unreachable_client: httpx.AsyncClient,
        factories: Factories,
        captured_logs: Callable[[], list[dict[str, Any]]],
    ) -> None:
        request_id = f"ping-{uuid.uuid4().hex}"

        response, _ = await book(unreachable_client, factories, request_id)

        assert response.status_code == 201
        [failure] = logged(captured_logs(), "webhook_ping_failed", request_id)
        assert "ConnectError" in failure["error"]


@pytest.fixture
def hanging_server(receiver: HttpReceiver, log_dir: Path) -> Iterator[Gunicorn]:
    """tripbook under gunicorn, pinging a receiver that answers nobody until released."""
    env = {
        "TRIPBOOK_NOTIFY_WEBHOOK_URL": f"{receiver.url}/hang",
        "TRIPBOOK_NOTIFY_WEBHOOK_TIMEOUT_S": str(HANG_TIMEOUT_S),
    }
    try:
        with run_gunicorn(log_dir, workers=1, env=env) as server:
            yield server
    finally:
        receiver.release()


@pytest.mark.slow
async def test_a_hanging_receiver_never_delays_the_booking(
    hanging_server: Gunicorn, receiver: HttpReceiver, factories: Factories
) -> None:
    request_id = f"hang-{uuid.uuid4().hex}"

    async with httpx.AsyncClient(base_url=hanging_server.url, timeout=30) as http:
        # Connections to PostgreSQL and Redis made first, so the hold's time is its own.
        assert (await http.get("/readyz")).status_code == 200
        started = time.monotonic()
        response, departure_id = await book(http, factories, request_id)
        answered_in = time.monotonic() - started

    # Answered before the ping could even time out: the response does not wait for it.
    assert response.status_code == 201, response.text
    assert answered_in < HANG_TIMEOUT_S
    assert logged(hanging_server.log_lines(), "webhook_ping_failed", request_id) == []
    [ping] = await eventually(
        lambda: pings(receiver, request_id) or None, what="the ping to arrive"
    )
    assert ping.json()["reservation_id"] == response.json()["id"]
    assert ping.json()["departure_id"] == departure_id
    [failure] = await eventually(
        lambda: logged(hanging_server.log_lines(), "webhook_ping_failed", request_id) or None,
        what="the ping to time out",
    )
    # It gave up while the receiver was still hanging, after the configured timeout.
    assert receiver.hanging() == 1
    assert failure["level"] == "warning"
    assert failure["reservation_id"] == response.json()["id"]
    assert "ReadTimeout" in failure["error"]
    waited = datetime.fromisoformat(failure["timestamp"]) - ping.received_at
    assert waited >= timedelta(seconds=HANG_TIMEOUT_S - CLOCK_SLACK_S)
    assert logged(hanging_server.log_lines(), "webhook_ping_sent", request_id) == []
