"""Seat holds, reads, cancellation and expiry, in domain terms (DESIGN §4)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tripbook.core.errors import InvalidInput, Unauthenticated
from tripbook.core.metrics import RESERVATIONS
from tripbook.core.money import Money
from tripbook.core.outbox import Message, enqueue
from tripbook.core.pagination import Page, decode_cursor, encode_cursor
from tripbook.reservations import repository
from tripbook.reservations.exceptions import (
    DepartureClosed,
    InvalidPassengers,
    ReservationNotFound,
    SeatsUnavailable,
    TooManySeats,
)
from tripbook.reservations.models import Reservation, ReservationStatus
from tripbook.reservations.schemas import PassengerRead, ReservationRead
from tripbook.reservations.state import check_transition, releases_seats
from tripbook.trips.exceptions import DepartureNotFound
from tripbook.users.models import User

EMAIL_TASK = "email.send"


@dataclass(frozen=True, slots=True)
class HoldRequest:
    departure_id: int
    seats: int
    passenger_names: Sequence[str]


@dataclass(frozen=True, slots=True)
class SeatsReleased:
    """What a caller must do after commit: invalidate the trip's cached detail."""

    trip_id: int


def to_read(reservation: Reservation) -> ReservationRead:
    return ReservationRead(
        id=reservation.id,
        status=ReservationStatus(reservation.status),
        departure_id=reservation.departure_id,
        seats=reservation.seats,
        passengers=[PassengerRead(full_name=p.full_name) for p in reservation.passengers],
        total=Money(amount=reservation.total_amount, currency=reservation.currency),
        expires_at=reservation.expires_at,
        created_at=reservation.created_at,
        updated_at=reservation.updated_at,
    )


@dataclass(frozen=True, slots=True)
class HeldSeats:
    """A committed hold: what to answer, and what to do once it stands."""

    reservation: ReservationRead
    trip_id: int  # whose cached detail is now stale
    event: Message  # the "seats held" email, for the relay to publish


async def hold_seats(
    connection: AsyncConnection,
    *,
    user_id: int,
    request: HoldRequest,
    hold_ttl: timedelta,
    max_seats: int,
    request_id: str | None,
) -> HeldSeats:
    """Hold seats on a departure in one statement (see ``repository.HOLD_SEATS``).

    ``connection`` may be in autocommit, where the statement is the whole transaction, or
    inside the caller's transaction (an idempotent request), which then commits.
    """
    # Everything that can be checked without the database is checked first.
    if request.seats > max_seats:
        raise TooManySeats(f"At most {max_seats} seats per reservation", max_seats=max_seats)
    if len(request.passenger_names) != request.seats:
        raise InvalidPassengers(seats=request.seats, passengers=len(request.passenger_names))
    now = datetime.now(UTC)
    reservation_id = uuid.uuid4()
    event = Message(
        event_id=uuid.uuid4(),
        task=EMAIL_TASK,
        payload={"template": "reservation_held", "reservation_id": str(reservation_id)},
        request_id=request_id,
    )
    expires_at = now + hold_ttl
    outcome = await repository.hold_seats(
        connection,
        {
            "user_id": user_id,
            "departure_id": request.departure_id,
            "seats": request.seats,
            "reservation_id": reservation_id,
            "expires_at": expires_at,
            "now": now,
            "passenger_names": list(request.passenger_names),
            "event_id": event.event_id,
            "event_task": event.task,
            "event_payload": json.dumps(event.payload),
            "request_id": event.request_id,
        },
    )
    if not outcome.caller_exists:
        raise Unauthenticated("Invalid token")  # the account was deleted after sign-in
    if outcome.departs_at is None or outcome.trip_id is None:
        raise DepartureNotFound(departure_id=request.departure_id)
    if outcome.departs_at <= now:
        raise DepartureClosed(departure_id=request.departure_id)
    if outcome.total_amount is None:
        RESERVATIONS.labels("refused").inc()
        raise SeatsUnavailable(
            departure_id=request.departure_id,
            requested=request.seats,
            available=outcome.seats_available,
        )
    RESERVATIONS.labels("held").inc()
    assert outcome.currency is not None
    reservation = ReservationRead(
        id=reservation_id,
        status=ReservationStatus.HELD,
        departure_id=request.departure_id,
        seats=request.seats,
        passengers=[PassengerRead(full_name=name) for name in request.passenger_names],
        total=Money(amount=outcome.total_amount, currency=outcome.currency),
        expires_at=expires_at,
        created_at=now,
        updated_at=now,
    )
    return HeldSeats(reservation=reservation, trip_id=outcome.trip_id, event=event)


async def get_reservation(
    session: AsyncSession, *, user: User, reservation_id: uuid.UUID, for_update: bool = False
) -> Reservation:
    """The caller's reservation (ops: anyone's). Another user's is not found, not forbidden."""
    reservation = await repository.get_with_passengers(
        session, reservation_id, for_update=for_update
    )
    if reservation is None or (user.role != "ops" and reservation.user_id != user.id):
        raise ReservationNotFound(reservation_id=str(reservation_id))
    return reservation


async def list_reservations(
    session: AsyncSession,
    *,
    user: User,
    status: ReservationStatus | None,
    cursor: str | None,
    limit: int,
) -> Page[ReservationRead]:
    after = None
    if cursor:
        created_at, reservation_id = decode_cursor(cursor, 2)
        try:
            after = (datetime.fromisoformat(created_at), uuid.UUID(reservation_id))
        except (TypeError, ValueError) as exc:
            raise InvalidInput("Malformed cursor", field="cursor") from exc
    rows = await repository.list_for_user(
        session,
        user_id=None if user.role == "ops" else user.id,
        status=status,
        after=after,
        limit=limit + 1,
    )
    items = [to_read(row) for row in rows[:limit]]
    next_cursor = (
        encode_cursor(rows[limit - 1].created_at.isoformat(), str(rows[limit - 1].id))
        if len(rows) > limit
        else None
    )
    return Page[ReservationRead](items=items, next_cursor=next_cursor)


async def transition(
    session: AsyncSession,
    reservation: Reservation,
    target: ReservationStatus,
    *,
    request_id: str | None,
) -> SeatsReleased | None:
    """Move a locked reservation to ``target``, releasing its seats when it lets them go."""
    current = ReservationStatus(reservation.status)
    check_transition(reservation.status, target)
    reservation.status = target.value
    reservation.updated_at = datetime.now(UTC)
    released = None
    if releases_seats(current, target):
        trip_id = await repository.release_seats(
            session, departure_id=reservation.departure_id, seats=reservation.seats
        )
        released = SeatsReleased(trip_id=trip_id)
    RESERVATIONS.labels(target.value).inc()
    template = {
        ReservationStatus.CANCELLED: "reservation_cancelled",
        ReservationStatus.CONFIRMED: "reservation_confirmed",
        ReservationStatus.PAYMENT_FAILED: "payment_failed",
        ReservationStatus.EXPIRED: "reservation_expired",
    }.get(target)
    if template is not None:
        enqueue(
            session,
            EMAIL_TASK,
            {"template": template, "reservation_id": str(reservation.id)},
            request_id=request_id,
        )
    return released


async def cancel(
    session: AsyncSession, *, user: User, reservation_id: uuid.UUID, request_id: str | None
) -> tuple[ReservationRead, SeatsReleased | None]:
    reservation = await get_reservation(
        session, user=user, reservation_id=reservation_id, for_update=True
    )
    was_confirmed = reservation.status == ReservationStatus.CONFIRMED
    released = await transition(
        session, reservation, ReservationStatus.CANCELLED, request_id=request_id
    )
    if was_confirmed:
        # Money was taken: the refund is durable work for a worker.
        enqueue(
            session,
            "payments.refund",
            {"reservation_id": str(reservation.id)},
            request_id=request_id,
        )
    await session.flush()
    return to_read(reservation), released


async def expire_due_holds(
    session: AsyncSession, *, now: datetime | None = None, batch: int = 500
) -> list[SeatsReleased]:
    """Expire holds past ``expires_at``; safe to run concurrently (SKIP LOCKED)."""
    rows = await repository.expire_due(session, now=now or datetime.now(UTC), batch=batch)
    for row in rows:
        RESERVATIONS.labels("expired").inc()
        enqueue(
            session,
            EMAIL_TASK,
            {"template": "reservation_expired", "reservation_id": str(row.id)},
            request_id=None,
        )
    return [SeatsReleased(trip_id=trip_id) for trip_id in {row.trip_id for row in rows}]
