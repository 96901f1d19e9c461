"""A chunked body (``Transfer-Encoding: chunked``, no ``Content-Length``) is counted as it
arrives: over ``TRIPBOOK_MAX_BODY_BYTES`` it is 413 problem+json and nothing is written.

Through a real gunicorn, whose HTTP parser de-chunks the body, so the limit cannot rely on
a declared length; the same request under the limit is served, so only the size differs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import hold_body
from tests.support.factories import Account, Factories
from tests.support.problems import assert_problem
from tests.support.servers import Gunicorn, run_gunicorn

pytestmark = pytest.mark.slow

MAX_BODY_BYTES = 2048
CHUNK_BYTES = 500  # the limit is crossed several chunks in
SEATS = 10


@pytest.fixture
def server(log_dir: Path) -> Iterator[Gunicorn]:
    env = {"TRIPBOOK_MAX_BODY_BYTES": str(MAX_BODY_BYTES)}
    with run_gunicorn(log_dir, workers=1, env=env) as running:
        yield running


def padded(body: dict[str, Any], size: int) -> bytes:
    """``body`` as JSON followed by whitespace up to ``size`` bytes: still a valid hold."""
    encoded = json.dumps(body).encode()
    assert len(encoded) <= size
    return encoded + b" " * (size - len(encoded))


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), CHUNK_BYTES):
        yield data[start : start + CHUNK_BYTES]


async def post_chunked(
    server: Gunicorn, account: Account, data: bytes, request_id: str
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        response = await http.post(
            "/v1/reservations",
            content=chunks(data),  # no length known up front: httpx sends it chunked
            headers={
                **account.headers,
                "content-type": "application/json",
                "X-Request-ID": request_id,
            },
        )
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in response.request.headers
    return response


async def test_a_chunked_body_over_the_limit_is_413_and_writes_nothing(
    server: Gunicorn, factories: Factories
) -> None:
    account = await factories.account()
    departure = await factories.departure(seats=SEATS)
    within_id, over_id = (f"chunked-{uuid.uuid4().hex}" for _ in range(2))
    body = hold_body(departure.id, 2, names=[within_id, over_id])

    within = await post_chunked(server, account, padded(body, MAX_BODY_BYTES), within_id)
    over = await post_chunked(server, account, padded(body, 3 * MAX_BODY_BYTES), over_id)

    assert within.status_code == 201, within.text
    problem = assert_problem(over, 413)
    assert (problem["code"], problem["request_id"]) == ("PAYLOAD_TOO_LARGE", over_id)
    assert str(MAX_BODY_BYTES) in problem["detail"]
    # Only the hold under the limit took seats.
    reservations = await factories.reservations(departure.id)
    assert [str(r.id) for r in reservations] == [within.json()["id"]]
    assert await factories.seats_available(departure.id) == SEATS - 2
    assert "unhandled_exception" not in server.log()
