from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from tripbook.trips.models import Departure, Trip


@dataclass(frozen=True, slots=True)
class TripFilters:
    origin: str | None = None
    destination: str | None = None
    departs_after: datetime | None = None
    departs_before: datetime | None = None
    min_seats: int | None = None


def _departure_conditions(filters: TripFilters, now: datetime) -> list[object]:
    # Departed runs never match, whatever ``departs_after`` says.
    earliest = max(filters.departs_after, now) if filters.departs_after else now
    conditions: list[object] = [Departure.departs_at > earliest]
    if filters.departs_before is not None:
        conditions.append(Departure.departs_at < filters.departs_before)
    if filters.min_seats is not None:
        conditions.append(Departure.seats_available >= filters.min_seats)
    return conditions


async def search(
    session: AsyncSession, filters: TripFilters, *, now: datetime, after_id: int | None, limit: int
) -> list[tuple[Trip, datetime | None, int | None]]:
    """Trips with a matching upcoming departure, by id (stable for keyset paging)."""
    matching = (
        select(
            Departure.trip_id,
            func.min(Departure.departs_at).label("next_departure_at"),
            func.min(Departure.price).label("from_price"),
        )
        .where(*_departure_conditions(filters, now))  # type: ignore[arg-type]
        .group_by(Departure.trip_id)
        .subquery()
    )
    query = (
        select(Trip, matching.c.next_departure_at, matching.c.from_price)
        .join(matching, matching.c.trip_id == Trip.id)
        .order_by(Trip.id)
        .limit(limit)
    )
    if filters.origin:
        query = query.where(func.lower(Trip.origin) == filters.origin.lower())
    if filters.destination:
        query = query.where(func.lower(Trip.destination) == filters.destination.lower())
    if after_id is not None:
        query = query.where(Trip.id > after_id)
    result = await session.execute(query)
    return [(row[0], row[1], row[2]) for row in result.all()]


async def get_trip_with_departures(
    session: AsyncSession, trip_id: int, *, now: datetime
) -> Trip | None:
    query = (
        select(Trip)
        .where(Trip.id == trip_id)
        .options(selectinload(Trip.departures.and_(and_(Departure.departs_at > now))))
    )
    result = await session.execute(query)
    return result.scalar_one_or_none()


async def get_trip(session: AsyncSession, trip_id: int) -> Trip | None:
    return await session.get(Trip, trip_id)


async def get_departure(session: AsyncSession, departure_id: int) -> Departure | None:
    return await session.get(Departure, departure_id)
