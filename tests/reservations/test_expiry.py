"""Expiry releases exactly the seats of holds past expires_at, once, even with two sweeps."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.api import hold_body
from tests.support.factories import Account, Factories
from tripbook.core.db import unit_of_work
from tripbook.reservations.models import Reservation
from tripbook.reservations.service import expire_due_holds


async def hold(client: httpx.AsyncClient, account: Account, departure_id: int, seats: int) -> str:
    response = await client.post(
        "/v1/reservations", json=hold_body(departure_id, seats), headers=account.headers
    )
    assert response.status_code == 201
    return str(response.json()["id"])


async def backdate(
    sessionmaker: async_sessionmaker[AsyncSession], reservation_ids: list[str]
) -> None:
    async with unit_of_work(sessionmaker) as session:
        await session.execute(
            update(Reservation)
            .where(Reservation.id.in_([uuid.UUID(i) for i in reservation_ids]))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )


async def statuses(factories: Factories, departure_id: int) -> dict[str, str]:
    return {str(r.id): r.status for r in await factories.reservations(departure_id)}


class TestExpireDueHolds:
    async def test_releases_exactly_the_expired_holds(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        account = await factories.account()
        departure = await factories.departure(seats=20)
        expired = [await hold(client, account, departure.id, seats) for seats in (2, 3)]
        live = await hold(client, account, departure.id, 4)
        cancelled = await hold(client, account, departure.id, 1)
        await client.post(f"/v1/reservations/{cancelled}/cancel", headers=account.headers)
        await backdate(sessionmaker, [*expired, cancelled])

        async with unit_of_work(sessionmaker) as session:
            released = await expire_due_holds(session)

        assert departure.trip_id in {r.trip_id for r in released}
        assert await statuses(factories, departure.id) == {
            expired[0]: "expired",
            expired[1]: "expired",
            live: "held",
            cancelled: "cancelled",
        }
        assert await factories.seats_available(departure.id) == 20 - 4

    async def test_two_concurrent_sweeps_release_nothing_twice(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        account = await factories.account()
        departures = [await factories.departure(seats=30) for _ in range(3)]
        held = [
            await hold(client, account, departure.id, 1 + n % 3)
            for departure in departures
            for n in range(8)
        ]
        await backdate(sessionmaker, held)

        async def sweep() -> None:
            # Small batches, so the two sweeps interleave over several rounds.
            while True:
                async with unit_of_work(sessionmaker) as session:
                    if not await expire_due_holds(session, batch=3):
                        return

        await asyncio.gather(sweep(), sweep())

        for departure in departures:
            assert set((await statuses(factories, departure.id)).values()) == {"expired"}
            assert await factories.seats_available(departure.id) == 30
