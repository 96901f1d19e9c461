"""Test data made directly through the services: users with tokens, trips with departures."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tripbook.core.db import unit_of_work
from tripbook.core.security import Role, create_access_token
from tripbook.reservations.models import Reservation
from tripbook.trips.models import Departure, Trip
from tripbook.users import service as users

PASSWORD = "correct-horse-42"


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def in_days(days: float) -> datetime:
    return datetime.now(UTC) + timedelta(days=days)


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    email: str
    role: Role
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True, slots=True)
class Factories:
    app: FastAPI
    sessionmaker: async_sessionmaker[AsyncSession]

    async def account(self, role: Role = "customer", *, password: str = PASSWORD) -> Account:
        email = f"{role}-{uuid.uuid4().hex[:12]}@example.com"
        async with unit_of_work(self.sessionmaker) as session:
            user = await users.register(
                session, email=email, password=password, full_name="Test Person", role=role
            )
        token = create_access_token(self.app.state.settings, user_id=user.id, role=role)
        return Account(id=user.id, email=email, role=role, token=token)

    async def departure(
        self,
        *,
        seats: int = 50,
        price: int = 2500,
        departs_in: timedelta = timedelta(days=7),
        origin: str = "Lisbon",
        destination: str = "Porto",
    ) -> Departure:
        departs_at = datetime.now(UTC) + departs_in
        async with unit_of_work(self.sessionmaker) as session:
            trip = Trip(
                origin=origin, destination=destination, title=f"Trip {uuid.uuid4().hex[:8]}"
            )
            session.add(trip)
            await session.flush()
            departure = Departure(
                trip_id=trip.id,
                departs_at=departs_at,
                arrives_at=departs_at + timedelta(hours=3),
                price=price,
                seats_total=seats,
                seats_available=seats,
            )
            session.add(departure)
        return departure

    async def seats_available(self, departure_id: int) -> int:
        async with self.sessionmaker() as session:
            departure = await session.get(Departure, departure_id)
            assert departure is not None
            return departure.seats_available

    async def reservations(self, departure_id: int) -> list[Reservation]:
        async with self.sessionmaker() as session:
            result = await session.execute(
                select(Reservation).where(Reservation.departure_id == departure_id)
            )
            return list(result.scalars())
