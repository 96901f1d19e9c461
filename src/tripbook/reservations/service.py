"""Seat holds, reads, cancellation and expiry, in domain terms (DESIGN §4)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tripbook.core.metrics import RESERVATIONS
from tripbook.core.money import Money
from tripbook.core.outbox import Message, enqueue
from tripbook.core.pagination import Page, decode_time_id_cursor, encode_time_id_cursor
from tripbook.core.security import InvalidToken
from tripbook.notifications.service import EMAIL_TASK
from tripbook.payments import refunds
from tripbook.reservations import repository
from tripbook.reservations.exceptions import (
    CancellationClosed,
    DepartureClosed,
    InvalidPassengers,
    ReservationNotFound,
    SeatsUnavailable,
    TooManySeats,
)
from tripbook.reservations.models import Reservation, ReservationStatus
from tripbook.reservations.schemas import PassengerRead, ReservationRead
from tripbook.reservations.state import (
    check_transition,
    effective_status,
    releases_seats,
    takes_seats,
)
from tripbook.trips.exceptions import DepartureNotFound
from tripbook.users.models import User

# The email a customer gets when their reservation enters a state.
EMAILS = {
    ReservationStatus.CANCELLED: "reservation_cancelled",
    ReservationStatus.CONFIRMED: "reservation_confirmed",
    ReservationStatus.PAYMENT_FAILED: "payment_failed",
    ReservationStatus.EXPIRED: "reservation_expired",
}


@dataclass(frozen=True, slots=True)
class HoldRequest:
    departure_id: int
    seats: int
    passenger_names: Sequence[str]


@dataclass(frozen=True, slots=True)
class SeatsChanged:
    """Seats were released or taken back: after commit, the trip's cached detail is stale."""

    trip_id: int


def to_read(reservation: Reservation) -> ReservationRead:
    return ReservationRead(
        id=reservation.id,
        status=effective_status(reservation.status, reservation.expires_at, datetime.now(UTC)),
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
        raise InvalidToken("Invalid token")  # the account was deleted after sign-in
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
    after = decode_time_id_cursor(cursor) if cursor else None
    rows = await repository.list_for_user(
        session,
        user_id=None if user.role == "ops" else user.id,
        status=status,
        after=after,
        limit=limit + 1,
    )
    items = [to_read(row) for row in rows[:limit]]
    last = rows[limit - 1] if len(rows) > limit else None
    next_cursor = encode_time_id_cursor(last.created_at, last.id) if last else None
    return Page[ReservationRead](items=items, next_cursor=next_cursor)


async def transition(
    session: AsyncSession,
    reservation: Reservation,
    target: ReservationStatus,
    *,
    request_id: str | None,
) -> SeatsChanged | None:
    """Move a locked reservation to ``target``, releasing its seats when it lets them go and
    taking them back (``SEATS_UNAVAILABLE`` when they are gone) when it needs them again."""
    current = ReservationStatus(reservation.status)
    check_transition(reservation.status, target)
    changed = None
    if takes_seats(current, target):
        changed = await _take_seats_back(session, reservation)
    elif releases_seats(current, target):
        trip_id = await repository.release_seats(
            session, departure_id=reservation.departure_id, seats=reservation.seats
        )
        changed = SeatsChanged(trip_id=trip_id)
    reservation.status = target.value
    reservation.updated_at = datetime.now(UTC)
    RESERVATIONS.labels(target.value).inc()
    template = EMAILS.get(target)
    if template is not None:
        enqueue(
            session,
            EMAIL_TASK,
            {"template": template, "reservation_id": str(reservation.id)},
            request_id=request_id,
        )
    return changed


async def _take_seats_back(session: AsyncSession, reservation: Reservation) -> SeatsChanged:
    now = datetime.now(UTC)
    trip_id = await repository.retake_seats(
        session, departure_id=reservation.departure_id, seats=reservation.seats, now=now
    )
    if trip_id is not None:
        return SeatsChanged(trip_id=trip_id)
    departure = await repository.departure_of(session, reservation.departure_id)
    if departure is None or departure.departs_at <= now:
        raise DepartureClosed(departure_id=reservation.departure_id)
    RESERVATIONS.labels("refused").inc()
    raise SeatsUnavailable(
        departure_id=reservation.departure_id,
        requested=reservation.seats,
        available=departure.seats_available,
    )


async def cancel(
    session: AsyncSession,
    *,
    user: User,
    reservation_id: uuid.UUID,
    cancellation_deadline: timedelta,
    request_id: str | None,
) -> tuple[ReservationRead, SeatsChanged | None]:
    """Cancel a reservation and owe back what was paid for it.

    A customer may cancel a confirmed reservation only until ``cancellation_deadline``
    before departure (``CANCELLATION_CLOSED`` later); ops may always cancel. A charge still
    unknown is refunded once reconciliation finds it succeeded.
    """
    reservation = await get_reservation(
        session, user=user, reservation_id=reservation_id, for_update=True
    )
    now = datetime.now(UTC)
    status = effective_status(reservation.status, reservation.expires_at, now)
    check_transition(status, ReservationStatus.CANCELLED)  # a lapsed hold is expired
    if status is ReservationStatus.CONFIRMED and user.role != "ops":
        departure = await repository.departure_of(session, reservation.departure_id)
        assert departure is not None  # the foreign key says so
        if departure.departs_at - now < cancellation_deadline:
            raise CancellationClosed(
                departs_at=departure.departs_at.isoformat(),
                deadline_s=int(cancellation_deadline.total_seconds()),
            )
    released = await transition(
        session, reservation, ReservationStatus.CANCELLED, request_id=request_id
    )
    # Money taken is owed back in the same transaction (refunds.queue_refunds).
    await refunds.queue_refunds(session, reservation.id, request_id=request_id)
    await session.flush()
    return to_read(reservation), released


async def expire_due_holds(
    session: AsyncSession, *, now: datetime | None = None, batch: int = 500
) -> list[SeatsChanged]:
    """Write down holds (and declined reservations) past ``expires_at``; safe to run
    concurrently (SKIP LOCKED). A declined one was told already, so only holds get mail."""
    rows = await repository.expire_due(session, now=now or datetime.now(UTC), batch=batch)
    for row in rows:
        RESERVATIONS.labels("expired").inc()
        if row.was == ReservationStatus.HELD:
            enqueue(
                session,
                EMAIL_TASK,
                {"template": "reservation_expired", "reservation_id": str(row.id)},
                request_id=None,
            )
    trip_ids = {row.trip_id for row in rows if row.trip_id is not None}
    return [SeatsChanged(trip_id=trip_id) for trip_id in trip_ids]
