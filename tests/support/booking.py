"""The customer's flow through the HTTP API (hold, pay) and what the database then holds:
reservations, payments, outbox events; for tests that run it against real workers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.api import hold_body
from tests.support.factories import Account, Factories
from tests.support.workers import eventually
from tripbook.core.db import unit_of_work
from tripbook.core.outbox import OutboxEvent
from tripbook.payments.models import Payment
from tripbook.reservations.models import Reservation
from tripbook.trips.models import Departure


@dataclass
class Booking:
    """The customer's side of the flow, through the HTTP API, plus what the DB holds."""

    client: httpx.AsyncClient
    factories: Factories
    sessionmaker: async_sessionmaker[AsyncSession]

    async def customer_and_departure(
        self, *, seats: int = 10, price: int = 2500
    ) -> tuple[Account, Departure]:
        return await self.factories.account(), await self.factories.departure(
            seats=seats, price=price
        )

    async def hold(self, account: Account, departure_id: int, seats: int = 1) -> dict[str, Any]:
        response = await self.client.post(
            "/v1/reservations",
            json=hold_body(departure_id, seats),
            headers=account.headers,
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def pay(
        self, account: Account, reservation_id: str, token: str, request_id: str | None = None
    ) -> dict[str, Any]:
        headers = dict(account.headers)
        if request_id:
            headers["X-Request-ID"] = request_id
        response = await self.client.post(
            f"/v1/reservations/{reservation_id}/payment",
            json={"payment_token": token},
            headers=headers,
        )
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()
        assert body["status"] == "payment_pending"
        return body

    async def reservation(self, reservation_id: str) -> Reservation:
        async with self.sessionmaker() as session:
            reservation = await session.get(Reservation, uuid.UUID(reservation_id))
            assert reservation is not None
            return reservation

    async def wait_for_status(
        self, reservation_id: str, status: str, timeout_s: float = 20.0
    ) -> Reservation:
        async def reached() -> Reservation | None:
            reservation = await self.reservation(reservation_id)
            return reservation if reservation.status == status else None

        reservation: Reservation = await eventually(
            reached, timeout_s=timeout_s, what=f"status {status}"
        )
        return reservation

    async def payments(self, reservation_id: str, kind: str = "charge") -> list[Payment]:
        async with self.sessionmaker() as session:
            result = await session.scalars(
                select(Payment)
                .where(Payment.reservation_id == uuid.UUID(reservation_id), Payment.kind == kind)
                .order_by(Payment.created_at)
            )
            return list(result)

    async def events(self, reservation_id: str) -> list[OutboxEvent]:
        """The outbox rows about a reservation (their payloads name it or its payment)."""
        payment_ids = [str(p.id) for p in await self.payments(reservation_id)]
        async with self.sessionmaker() as session:
            result = await session.scalars(
                select(OutboxEvent)
                .where(
                    (OutboxEvent.payload["reservation_id"].astext == reservation_id)
                    | OutboxEvent.payload["payment_id"].astext.in_(payment_ids)
                )
                .order_by(OutboxEvent.created_at)
            )
            return list(result)


async def expire_now(booking: Booking, reservation_id: str) -> None:
    """Move a reservation's deadline into the past, as if its time had run out."""
    async with unit_of_work(booking.sessionmaker) as session:
        await session.execute(
            update(Reservation)
            .where(Reservation.id == uuid.UUID(reservation_id))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
