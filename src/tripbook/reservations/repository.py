"""Every query of the reservations domain. The hold and the expiry sweep are single
statements so that the departure row is locked for as short a time as possible."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import selectinload

from tripbook.core.db import DriverStatement, fetch_one_on_driver, in_autocommit
from tripbook.core.pagination import after_time_id
from tripbook.reservations.models import Reservation, ReservationStatus
from tripbook.reservations.state import LAPSES
from tripbook.trips.models import Departure

# The whole hold in one round trip, safe to run in autocommit: check the caller's account
# and read the departure and its price (no lock), then lock the departure row, take the
# seats only if enough are free and the departure has not left, and write the reservation,
# its passengers and its outbox event. The row stays locked only while this runs.
HOLD_SEATS = text(
    """
    WITH caller AS (
        SELECT id FROM user_account WHERE id = :user_id
    ), offer AS (
        SELECT d.id, d.departs_at, d.price, t.id AS trip_id, t.currency
        FROM departure AS d JOIN trip AS t ON t.id = d.trip_id
        WHERE d.id = :departure_id
    ), locked AS (
        SELECT d.id, d.seats_available
        FROM departure AS d, offer, caller
        WHERE d.id = offer.id AND offer.departs_at > :now
        FOR UPDATE OF d
    ), taken AS (
        UPDATE departure AS d SET seats_available = d.seats_available - :seats
        FROM locked
        WHERE d.id = locked.id AND d.seats_available >= :seats
        RETURNING d.id
    ), reservation_row AS (
        INSERT INTO reservation (id, user_id, departure_id, seats, status, total_amount,
                                 currency, expires_at, created_at, updated_at)
        SELECT :reservation_id, caller.id, taken.id, :seats, 'held', offer.price * :seats,
               offer.currency, :expires_at, :now, :now
        FROM taken, offer, caller
        RETURNING id, total_amount
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
    SELECT EXISTS (SELECT 1 FROM caller) AS caller_exists,
           offer.departs_at, offer.currency, offer.trip_id, locked.seats_available,
           (SELECT total_amount FROM reservation_row) AS total_amount
    FROM (SELECT 1) AS one
    LEFT JOIN offer ON true
    LEFT JOIN locked ON true
    """
)


@dataclass(frozen=True, slots=True)
class HoldOutcome:
    """What the hold statement saw and did."""

    caller_exists: bool
    departs_at: datetime | None  # None: no such departure
    currency: str | None
    trip_id: int | None
    seats_available: int | None  # before the hold; None when the row was not locked
    total_amount: int | None  # None: nothing held


# Writes down the end of holds (and of declined reservations) past ``expires_at``; only a
# hold still has seats to give back. Declined ones gave theirs back when they failed.
EXPIRE_DUE = text(
    """
    WITH due AS (
        SELECT id, status FROM reservation
        WHERE status IN ('held', 'payment_failed') AND expires_at <= :now
        ORDER BY expires_at
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    ), expired AS (
        UPDATE reservation AS r SET status = 'expired', updated_at = :now
        FROM due WHERE r.id = due.id
        RETURNING r.id, r.departure_id, r.seats, r.user_id, due.status AS was
    ), per_departure AS (
        SELECT departure_id, sum(seats) AS seats FROM expired
        WHERE was = 'held' GROUP BY departure_id
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
    SELECT expired.id, expired.was, released.trip_id
    FROM expired LEFT JOIN released ON released.id = expired.departure_id
    """
)

# Paying again after a decline takes the seats back the way a hold takes them: one
# conditional UPDATE that locks the departure row, and only while the departure is ahead.
RETAKE_SEATS = text(
    """
    UPDATE departure SET seats_available = seats_available - :seats
    WHERE id = :departure_id AND seats_available >= :seats AND departs_at > :now
    RETURNING trip_id
    """
)


HOLD_SEATS_ON_DRIVER = DriverStatement.compile(HOLD_SEATS)


async def hold_seats(connection: AsyncConnection, params: dict[str, Any]) -> HoldOutcome:
    if in_autocommit(connection):
        # The hot path: the statement is its whole transaction, so it can skip
        # SQLAlchemy's execution path (see ``fetch_one_on_driver``).
        record = await fetch_one_on_driver(connection, HOLD_SEATS_ON_DRIVER, params)
        assert record is not None  # the statement always answers one row
        return HoldOutcome(**record)
    # Inside the caller's transaction (an idempotent request), which SQLAlchemy began.
    row = (await connection.execute(HOLD_SEATS, params)).one()
    return HoldOutcome(**row._asdict())


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
        query = query.where(_reads_as(status, now=datetime.now(UTC)))
    if after is not None:
        query = query.where(after_time_id(Reservation.created_at, Reservation.id, after))
    return list((await session.execute(query)).scalars())


def _reads_as(status: ReservationStatus, *, now: datetime) -> ColumnElement[bool]:
    """Reservations a client sees in ``status``: a lapsed hold reads as expired."""
    lapsing = [state.value for state in LAPSES]
    lapsed = Reservation.status.in_(lapsing) & (Reservation.expires_at <= now)
    if status is ReservationStatus.EXPIRED:
        return (Reservation.status == status.value) | lapsed
    if status in LAPSES:
        return (Reservation.status == status.value) & (Reservation.expires_at > now)
    return Reservation.status == status.value


async def release_seats(session: AsyncSession, *, departure_id: int, seats: int) -> int:
    """Give seats back to a departure (row locked by the UPDATE); returns its trip id."""
    result = await session.execute(
        update(Departure)
        .where(Departure.id == departure_id)
        .values(seats_available=Departure.seats_available + seats)
        .returning(Departure.trip_id)
    )
    return int(result.scalar_one())


async def retake_seats(
    session: AsyncSession, *, departure_id: int, seats: int, now: datetime
) -> int | None:
    """Take seats on a departure that has not left; its trip id, or None when it cannot."""
    params = {"departure_id": departure_id, "seats": seats, "now": now}
    trip_id = (await session.execute(RETAKE_SEATS, params)).scalar_one_or_none()
    return None if trip_id is None else int(trip_id)


async def departure_of(session: AsyncSession, departure_id: int) -> Departure | None:
    return await session.get(Departure, departure_id)


async def expire_due(session: AsyncSession, *, now: datetime, batch: int) -> list[Any]:
    return list((await session.execute(EXPIRE_DUE, {"now": now, "batch": batch})).all())
