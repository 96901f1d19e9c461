"""The catalogue: search, detail, and ops-only creation of trips and departures."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from tripbook.core.money import Money
from tripbook.core.pagination import Page, decode_id_cursor, encode_cursor
from tripbook.trips import repository
from tripbook.trips.exceptions import InvalidSchedule, TripNotFound
from tripbook.trips.models import Departure, Trip
from tripbook.trips.repository import TripFilters
from tripbook.trips.schemas import (
    DepartureCreate,
    DepartureRead,
    TripCreate,
    TripRead,
    TripSummary,
)


def departure_read(departure: Departure, currency: str) -> DepartureRead:
    return DepartureRead(
        id=departure.id,
        trip_id=departure.trip_id,
        departs_at=departure.departs_at,
        arrives_at=departure.arrives_at,
        price=Money(amount=departure.price, currency=currency),
        seats_total=departure.seats_total,
        seats_available=departure.seats_available,
    )


async def search_trips(
    session: AsyncSession, filters: TripFilters, *, cursor: str | None, limit: int
) -> Page[TripSummary]:
    after_id = decode_id_cursor(cursor) if cursor else None
    rows = await repository.search(
        session, filters, now=datetime.now(UTC), after_id=after_id, limit=limit + 1
    )
    items = [
        TripSummary(
            id=trip.id,
            origin=trip.origin,
            destination=trip.destination,
            title=trip.title,
            currency=trip.currency,
            next_departure_at=next_at,
            from_price=Money(amount=price, currency=trip.currency) if price is not None else None,
        )
        for trip, next_at, price in rows[:limit]
    ]
    next_cursor = encode_cursor(items[-1].id) if len(rows) > limit else None
    return Page[TripSummary](items=items, next_cursor=next_cursor)


async def get_trip(session: AsyncSession, trip_id: int) -> TripRead:
    trip = await repository.get_trip_with_departures(session, trip_id, now=datetime.now(UTC))
    if trip is None:
        raise TripNotFound(trip_id=trip_id)
    return TripRead(
        id=trip.id,
        origin=trip.origin,
        destination=trip.destination,
        title=trip.title,
        description=trip.description,
        currency=trip.currency,
        departures=[departure_read(departure, trip.currency) for departure in trip.departures],
    )


async def create_trip(session: AsyncSession, *, data: TripCreate) -> TripRead:
    trip = Trip(**data.model_dump())
    session.add(trip)
    await session.flush()
    return TripRead(departures=[], **data.model_dump(), id=trip.id)


async def add_departure(
    session: AsyncSession, *, trip_id: int, data: DepartureCreate
) -> DepartureRead:
    trip = await repository.get_trip(session, trip_id)
    if trip is None:
        raise TripNotFound(trip_id=trip_id)
    if data.departs_at <= datetime.now(UTC):
        raise InvalidSchedule("departs_at must be in the future")
    departure = Departure(
        trip_id=trip.id,
        departs_at=data.departs_at,
        arrives_at=data.arrives_at,
        price=data.price,
        seats_total=data.seats_total,
        seats_available=data.seats_total,
    )
    session.add(departure)
    await session.flush()
    return departure_read(departure, trip.currency)
