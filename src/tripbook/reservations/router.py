from __future__ import annotations

import uuid
from datetime import timedelta

from asgi_correlation_id import correlation_id
from fastapi import APIRouter, BackgroundTasks, Depends, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncConnection

from tripbook.core.db import after_commit, autocommit, unit_of_work
from tripbook.core.dependencies import (
    EngineDep,
    RedisDep,
    SessionDep,
    SessionmakerDep,
    SettingsDep,
)
from tripbook.core.idempotency import IdempotencyKeyHeader, run_idempotently
from tripbook.core.outbox import publish_committed
from tripbook.core.pagination import CursorQuery, LimitQuery, Page
from tripbook.core.ratelimit import rate_limit
from tripbook.notifications.webhook import ping_seats_held
from tripbook.reservations import service
from tripbook.reservations.models import ReservationStatus
from tripbook.reservations.schemas import ReservationCreate, ReservationRead
from tripbook.reservations.service import HeldSeats, HoldRequest
from tripbook.trips import cache
from tripbook.users.dependencies import CurrentCaller, CurrentUser

router = APIRouter(prefix="/v1/reservations", tags=["reservations"])
# A route with a limit of its own counts against that one instead (as slowapi's default
# limits do), so a hold costs one limiter round trip, not two.
default_limit = Depends(rate_limit("default"))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ReservationRead,
    dependencies=[Depends(rate_limit("reservations"))],
)
async def create_reservation(
    body: ReservationCreate,
    request: Request,
    caller: CurrentCaller,
    sessionmaker: SessionmakerDep,
    engine: EngineDep,
    redis: RedisDep,
    settings: SettingsDep,
    background: BackgroundTasks,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    async def hold(connection: AsyncConnection) -> HeldSeats:
        return await service.hold_seats(
            connection,
            user_id=caller.user_id,
            request=HoldRequest(
                departure_id=body.departure_id,
                seats=body.seats,
                passenger_names=[passenger.full_name for passenger in body.passengers],
            ),
            hold_ttl=timedelta(seconds=settings.hold_ttl_s),
            max_seats=settings.max_seats_per_reservation,
            request_id=correlation_id.get(),
        )

    async def once_committed(held: HeldSeats) -> None:
        await publish_committed(engine, [held.event])  # the "seats held" email
        await cache.invalidate(redis, settings, held.trip_id)
        if settings.notify_webhook_url:
            # Loss-tolerant, after the response: never delays or fails the booking.
            background.add_task(
                ping_seats_held,
                settings.notify_webhook_url,
                timeout_s=settings.notify_webhook_timeout_s,
                reservation_id=held.reservation.id,
                departure_id=held.reservation.departure_id,
                seats=held.reservation.seats,
                request_id=correlation_id.get(),
            )

    if idempotency_key is None:
        # Nothing to record beside the hold, so its one statement runs in autocommit: no
        # BEGIN or COMMIT round trips, and the departure row is locked only while
        # PostgreSQL runs it, not while this worker's event loop gets round to COMMIT.
        async with autocommit(engine) as connection:
            held = await hold(connection)
        await once_committed(held)
        return Response(
            held.reservation.model_dump_json(),
            status.HTTP_201_CREATED,
            media_type="application/json",
        )

    # With a key the response is recorded too, in the same transaction as the hold.
    async with unit_of_work(sessionmaker) as session:

        async def hold_in_session() -> ReservationRead:
            held = await hold(await session.connection())
            after_commit(session, lambda: once_committed(held))
            return held.reservation

        return await run_idempotently(
            request,
            session,
            user_id=caller.user_id,
            key=idempotency_key,
            ttl=timedelta(seconds=settings.idempotency_ttl_s),
            status_code=status.HTTP_201_CREATED,
            work=hold_in_session,
        )


@router.get("", response_model=Page[ReservationRead], dependencies=[default_limit])
async def list_reservations(
    user: CurrentUser,
    session: SessionDep,
    status: ReservationStatus | None = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 20,
) -> Page[ReservationRead]:
    return await service.list_reservations(
        session, user=user, status=status, cursor=cursor, limit=limit
    )


@router.get("/{reservation_id}", response_model=ReservationRead, dependencies=[default_limit])
async def get_reservation(
    reservation_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> ReservationRead:
    reservation = await service.get_reservation(session, user=user, reservation_id=reservation_id)
    return service.to_read(reservation)


@router.post(
    "/{reservation_id}/cancel", response_model=ReservationRead, dependencies=[default_limit]
)
async def cancel_reservation(
    reservation_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
) -> ReservationRead:
    """Cancel: seats released, and whatever was paid refunded in full. A customer may
    cancel a confirmed reservation until ``TRIPBOOK_CANCELLATION_DEADLINE_S`` before
    departure (409 ``CANCELLATION_CLOSED`` later); ops may always cancel."""
    reservation, released = await service.cancel(
        session,
        user=user,
        reservation_id=reservation_id,
        cancellation_deadline=timedelta(seconds=settings.cancellation_deadline_s),
        request_id=correlation_id.get(),
    )
    if released is not None:
        after_commit(session, lambda: cache.invalidate(redis, settings, released.trip_id))
    return reservation
