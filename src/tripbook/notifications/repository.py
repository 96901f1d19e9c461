"""The reads an email needs: the reservation, its passengers, trip, departure and owner."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from tripbook.reservations.models import Reservation
from tripbook.trips.models import Departure, Trip
from tripbook.users.models import User


@dataclass(frozen=True, slots=True)
class ReservationDetails:
    reservation: Reservation
    departure: Departure
    trip: Trip
    owner: User


async def reservation_details(
    session: AsyncSession, reservation_id: uuid.UUID
) -> ReservationDetails | None:
    query = (
        select(Reservation, Departure, Trip, User)
        .join(Departure, Departure.id == Reservation.departure_id)
        .join(Trip, Trip.id == Departure.trip_id)
        .join(User, User.id == Reservation.user_id)
        .where(Reservation.id == reservation_id)
        .options(selectinload(Reservation.passengers))
    )
    row = (await session.execute(query)).first()
    return None if row is None else ReservationDetails(*row)
