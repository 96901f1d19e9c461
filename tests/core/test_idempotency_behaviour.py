"""``Idempotency-Key`` expiry: a stored response is replayed for ``TRIPBOOK_IDEMPOTENCY_TTL_S``;
after that the same key does the work again. The purge of expired keys by the beat job
is in tests/workers/test_idempotency_behaviour.py."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.api import hold_body
from tests.support.apps import serving
from tests.support.factories import Account, Factories
from tests.support.idempotency import expire
from tripbook.core.idempotency import IdempotencyRecord
from tripbook.settings import Settings

TTL_S = 120


async def stored(
    sessionmaker: async_sessionmaker[AsyncSession], account: Account, key: str
) -> IdempotencyRecord:
    async with sessionmaker() as session:
        record = await session.get(IdempotencyRecord, (account.id, key))
        assert record is not None
        return record


@pytest.fixture
async def short_ttl_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(settings, idempotency_ttl_s=TTL_S) as served:
        yield served.client


class TestExpiry:
    async def test_a_key_is_kept_for_the_configured_ttl(
        self,
        short_ttl_client: httpx.AsyncClient,
        factories: Factories,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        account, departure = await factories.account(), await factories.departure()
        key = f"ttl-{uuid.uuid4()}"

        response = await short_ttl_client.post(
            "/v1/reservations",
            json=hold_body(departure.id, 1),
            headers={**account.headers, "Idempotency-Key": key},
        )

        assert response.status_code == 201, response.text
        record = await stored(sessionmaker, account, key)
        assert record.expires_at - record.created_at == timedelta(seconds=TTL_S)
        assert record.response_body == response.json()

    async def test_an_expired_key_does_the_work_again(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
    ) -> None:
        account, departure = await factories.account(), await factories.departure(seats=10)
        headers = {**account.headers, "Idempotency-Key": f"expiry-{uuid.uuid4()}"}
        first = await client.post(
            "/v1/reservations", json=hold_body(departure.id, 1), headers=headers
        )
        replayed = await client.post(
            "/v1/reservations", json=hold_body(departure.id, 1), headers=headers
        )
        assert replayed.headers.get("idempotent-replayed") == "true"
        assert replayed.json() == first.json()
        await expire(sessionmaker, account, headers["Idempotency-Key"])

        again = await client.post(
            "/v1/reservations", json=hold_body(departure.id, 1), headers=headers
        )

        assert (first.status_code, again.status_code) == (201, 201)
        assert "idempotent-replayed" not in again.headers
        assert again.json()["id"] != first.json()["id"]
        assert await factories.seats_available(departure.id) == 8
        assert len(await factories.reservations(departure.id)) == 2
        # The key now stands for the new response, kept for a fresh TTL, and replays it.
        record = await stored(sessionmaker, account, headers["Idempotency-Key"])
        assert record.response_body == again.json()
        assert record.expires_at - record.created_at == timedelta(
            seconds=settings.idempotency_ttl_s
        )
        assert record.expires_at > datetime.now(UTC)
        third = await client.post(
            "/v1/reservations", json=hold_body(departure.id, 1), headers=headers
        )
        assert third.headers.get("idempotent-replayed") == "true"
        assert third.json() == again.json()
        assert await factories.seats_available(departure.id) == 8

    async def test_an_expired_key_takes_a_different_request(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        """Before expiry another body is 422 IDEMPOTENCY_KEY_REUSED; after, it is new work."""
        account, departure = await factories.account(), await factories.departure(seats=10)
        headers = {**account.headers, "Idempotency-Key": f"reuse-{uuid.uuid4()}"}
        await client.post("/v1/reservations", json=hold_body(departure.id, 1), headers=headers)
        refused = await client.post(
            "/v1/reservations", json=hold_body(departure.id, 2), headers=headers
        )
        assert refused.status_code == 422
        assert refused.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
        await expire(sessionmaker, account, headers["Idempotency-Key"])

        accepted = await client.post(
            "/v1/reservations", json=hold_body(departure.id, 2), headers=headers
        )

        assert accepted.status_code == 201, accepted.text
        assert accepted.json()["seats"] == 2
        assert await factories.seats_available(departure.id) == 7
