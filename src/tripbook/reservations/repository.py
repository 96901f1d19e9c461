"""Every query of the reservations domain. The hold and the expiry sweep are single
statements so that the departure row is locked for as short a time as possible."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from tripbook.reservations.models import Reservation, ReservationStatus
from tripbook.trips.models import Departure, Trip

# Lock the departure row, take the seats only if enough are free, and write the
# reservation, its passengers and its outbox event, all in one round trip.
HOLD_SEATS = text(
    """
    WITH locked AS (
        SELECT id, seats_available FROM departure WHERE id = :departure_id FOR UPDATE
    ), taken AS (
        UPDATE departure AS d SET seats_available = d.seats_available - :seats
        FROM locked
        WHERE d.id = locked.id AND d.seats_available >= :seats
        RETURNING d.id
    ), reservation_row AS (
        INSERT INTO reservation (id, user_id, departure_id, seats, status, total_amount,
                                 currency, expires_at, created_at, updated_at)
        SELECT :reservation_id, :user_id, taken.id, :seats, 'held', :total_amount,
               :currency, :expires_at, :now, :now
        FROM taken
        RETURNING id
    ), passenger_rows AS (
        INSERT INTO passenger (id, reservation_id, position, full_name)
        SELECT gen_random_uuid(), reservation_row.id, names.position, names.full_name
        FROM reservation_row,
             unnest(CAST(:passenger_names AS text[])) WITH ORDINALITY
                 AS names(full_name, position)
    ), outbox_row AS (
        INSERT INTO outbox_event (id, task, payload, request_id, publish_attempts, created_at)
        SELECT :event_id, :event_task, CAST(:event_payload AS jsonb), :request_id, 0, :now
        FROM reservation_row
    )
    SELECT locked.seats_available, EXISTS (SELECT 1 FROM reservation_row) AS held
    FROM locked
    """
)

EXPIRE_DUE = text(
    """
    WITH due AS (
        SELECT id FROM reservation
        WHERE status IN ('held', 'payment_pending') AND expires_at <= :now
        ORDER BY expires_at
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    ), expired AS (
        UPDATE reservation AS r SET status = 'expired', updated_at = :now
        FROM due WHERE r.id = due.id
        RETURNING r.id, r.departure_id, r.seats, r.user_id
    ), per_departure AS (
        SELECT departure_id, sum(seats) AS seats FROM expired GROUP BY departure_id
    ), locked_departures AS (
        -- id order, like every other multi-row lock, so two sweeps cannot deadlock
        SELECT d.id FROM departure AS d JOIN per_departure AS p ON p.departure_id = d.id
        ORDER BY d.id FOR UPDATE OF d
    ), released AS (
        UPDATE departure AS d SET seats_available = d.seats_available + p.seats
        FROM per_departure AS p, locked_departures AS l
        WHERE d.id = p.departure_id AND l.id = d.id
        RETURNING d.id, d.trip_id
    )
    SELECT expired.id, expired.departure_id, expired.seats, expired.user_id, released.trip_id
    FROM expired JOIN released ON released.id = expired.departure_id
    """
)


async def hold_seats(session: AsyncSession, params: dict[str, Any]) -> tuple[int, bool] | None:
    """(seats available before, whether held), or None when the departure does not exist."""
    row = (await session.execute(HOLD_SEATS, params)).first()
    return None if row is None else (row.seats_available, row.held)


async def departure_with_trip(
    session: AsyncSession, departure_id: int
) -> tuple[Departure, Trip] | None:
    query = select(Departure, Trip).join(Trip).where(Departure.id == departure_id)
    row = (await session.execute(query)).first()
    return None if row is None else (row[0], row[1])


async def get_with_passengers(
    session: AsyncSession, reservation_id: uuid.UUID, *, for_update: bool = False
) -> Reservation | None:
    query = (
        select(Reservation)
        .where(Reservation.id == reservation_id)
        .options(selectinload(Reservation.passengers))
    )
    if for_update:
        query = query.with_for_update(of=Reservation)
    return (await session.execute(query)).scalar_one_or_none()


async def list_for_user(
    session: AsyncSession,
    *,
    user_id: int | None,
    status: ReservationStatus | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Reservation]:
    """Newest first; ``user_id=None`` lists everyone's (ops)."""
    query = (
        select(Reservation)
        .options(selectinload(Reservation.passengers))
        .order_by(Reservation.created_at.desc(), Reservation.id.desc())
        .limit(limit)
    )
    if user_id is not None:
        query = query.where(Reservation.user_id == user_id)
    if status is not None:
        query = query.where(Reservation.status == status.value)
    if after is not None:
        created_at, reservation_id = after
        query = query.where(
            (Reservation.created_at < created_at)
            | ((Reservation.created_at == created_at) & (Reservation.id < reservation_id))
        )
    return list((await session.execute(query)).scalars())


async def release_seats(session: AsyncSession, *, departure_id: int, seats: int) -> int:
    """Give seats back to a departure (row locked by the UPDATE); returns its trip id."""
    result = await session.execute(
        update(Departure)
        .where(Departure.id == departure_id)
        .values(seats_available=Departure.seats_available + seats)
        .returning(Departure.trip_id)
    )
    return int(result.scalar_one())


async def expire_due(session: AsyncSession, *, now: datetime, batch: int) -> list[Any]:
    return list((await session.execute(EXPIRE_DUE, {"now": now, "batch": batch})).all())
