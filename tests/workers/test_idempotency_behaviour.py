"""Beat's ``maintenance.purge_idempotency_keys``, run by a real worker: keys stored by the
API whose TTL has run out are deleted, live ones kept, and a purged key does the work
again (tests/core/test_idempotency_behaviour.py covers expiry itself)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.support.api import hold_body
from tests.support.booking import Booking
from tests.support.idempotency import expire
from tests.support.workers import CeleryProcess, eventually, run_beat
from tripbook.core.idempotency import IdempotencyRecord

pytestmark = pytest.mark.slow


async def test_beat_purges_expired_keys_and_a_purged_key_works_again(
    worker: CeleryProcess, booking: Booking, jobs_log_dir: Path, worker_env: dict[str, str]
) -> None:
    account, departure = await booking.customer_and_departure(seats=10)
    keys = {"expired": f"purged-{uuid.uuid4()}", "live": f"kept-{uuid.uuid4()}"}
    first: dict[str, str] = {}
    for name, key in keys.items():
        response = await booking.client.post(
            "/v1/reservations",
            json=hold_body(departure.id, 1),
            headers={**account.headers, "Idempotency-Key": key},
        )
        assert response.status_code == 201, response.text
        first[name] = response.json()["id"]
    await expire(booking.sessionmaker, account, keys["expired"])

    async def stored(key: str) -> IdempotencyRecord | None:
        async with booking.sessionmaker() as session:
            return await session.get(IdempotencyRecord, (account.id, key))

    async def purged() -> bool:
        return await stored(keys["expired"]) is None

    env = {**worker_env, "TRIPBOOK_IDEMPOTENCY_PURGE_INTERVAL_S": "0.5"}
    with run_beat(jobs_log_dir, env=env):
        await eventually(purged, what="the expired key to be purged")

    assert await stored(keys["live"]) is not None
    assert any(
        line.get("event") == "idempotency_keys_purged" and line["purged"] >= 1
        for line in worker.log_lines()
    )
    again = await booking.client.post(
        "/v1/reservations",
        json=hold_body(departure.id, 1),
        headers={**account.headers, "Idempotency-Key": keys["expired"]},
    )
    replayed = await booking.client.post(
        "/v1/reservations",
        json=hold_body(departure.id, 1),
        headers={**account.headers, "Idempotency-Key": keys["live"]},
    )
    assert again.status_code == 201, again.text
    assert "idempotent-replayed" not in again.headers
    assert again.json()["id"] not in first.values()
    assert replayed.headers.get("idempotent-replayed") == "true"
    assert replayed.json()["id"] == first["live"]
    assert await booking.factories.seats_available(departure.id) == 7
