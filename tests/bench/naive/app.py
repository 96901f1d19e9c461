"""The textbook seat hold, kept only as the baseline tripbook's holds are measured against.

The pattern a tutorial teaches: ``BaseHTTPMiddleware`` for the correlation id, a session
dependency that commits, and in the route ``select(...).with_for_update()``, a decrement
in Python, ``session.add`` of the reservation and its passengers, ``flush`` and
``refresh``. It uses tripbook's tables, models, engine options (same pool, same timeouts)
and JWTs, so the two differ only in how they hold seats and wrap requests.

The session dependency has ``scope="function"``, like tripbook's: both answer 201 only
after the commit, so their latencies compare like for like.

Run: ``gunicorn -c deploy/gunicorn.conf.py 'tests.bench.naive.app:create_app()'``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.middleware.base import BaseHTTPMiddleware

from tripbook.core.db import create_engine
from tripbook.core.errors import Unauthenticated
from tripbook.core.money import Money
from tripbook.core.security import decode_access_token
from tripbook.reservations.models import Passenger, Reservation, ReservationStatus
from tripbook.reservations.schemas import PassengerRead, ReservationCreate, ReservationRead
from tripbook.settings import Settings, get_settings
from tripbook.trips.models import Departure, Trip
from tripbook.users.models import User

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


class CorrelationIdMiddleware(BaseHTTPMiddleware):
    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        try:
            response = await call_next(request)
        finally:
            request_id_var.reset(token)
        response.headers["X-Request-ID"] = request_id
        return response


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session
        await session.commit()


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
bearer = OAuth2PasswordBearer(tokenUrl="/v1/auth/token")


async def current_user(
    request: Request, session: SessionDep, token: Annotated[str, Depends(bearer)]
) -> User:
    settings: Settings = request.app.state.settings
    try:
        claims = decode_access_token(settings, token)
    except Unauthenticated as exc:
        raise HTTPException(401, "Invalid token") from exc
    user = await session.get(User, claims.user_id)
    if user is None:
        raise HTTPException(401, "Invalid token")
    return user


CurrentUser = Annotated[User, Depends(current_user)]


async def create_reservation(
    body: ReservationCreate, request: Request, session: SessionDep, user: CurrentUser
) -> ReservationRead:
    settings: Settings = request.app.state.settings
    departure = await session.scalar(
        select(Departure).where(Departure.id == body.departure_id).with_for_update()
    )
    if departure is None:
        raise HTTPException(404, "Departure not found")
    if departure.seats_available < body.seats:
        raise HTTPException(409, {"code": "SEATS_UNAVAILABLE"})
    trip = await session.get(Trip, departure.trip_id)
    assert trip is not None
    departure.seats_available -= body.seats
    now = datetime.now(UTC)
    reservation = Reservation(
        user_id=user.id,
        departure_id=departure.id,
        seats=body.seats,
        status=ReservationStatus.HELD.value,
        total_amount=departure.price * body.seats,
        currency=trip.currency,
        expires_at=now + timedelta(seconds=settings.hold_ttl_s),
    )
    session.add(reservation)
    await session.flush()
    session.add_all(
        Passenger(reservation_id=reservation.id, position=position, full_name=p.full_name)
        for position, p in enumerate(body.passengers, start=1)
    )
    await session.flush()
    await session.refresh(reservation)  # created_at and updated_at come from the server
    return ReservationRead(
        id=reservation.id,
        status=ReservationStatus(reservation.status),
        departure_id=reservation.departure_id,
        seats=reservation.seats,
        passengers=[PassengerRead(full_name=p.full_name) for p in body.passengers],
        total=Money(amount=reservation.total_amount, currency=reservation.currency),
        expires_at=reservation.expires_at,
        created_at=reservation.created_at,
        updated_at=reservation.updated_at,
    )


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine = create_engine(app.state.settings)
    app.state.sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    try:
        yield
    finally:
        await engine.dispose()


def create_app() -> FastAPI:
    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)
    app.state.settings = get_settings()
    app.add_middleware(CorrelationIdMiddleware)
    app.add_api_route("/healthz", healthz, methods=["GET"])
    app.add_api_route(
        "/v1/reservations",
        create_reservation,
        methods=["POST"],
        status_code=201,
        response_model=ReservationRead,
    )
    return app
