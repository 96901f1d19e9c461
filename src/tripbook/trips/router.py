from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status
from fastapi.exceptions import RequestValidationError

from tripbook.core.db import after_commit
from tripbook.core.dependencies import IdPath, RedisDep, SessionDep, SettingsDep
from tripbook.core.pagination import CursorQuery, LimitQuery, Page
from tripbook.core.ratelimit import rate_limit
from tripbook.core.text import NO_CONTROL_PATTERN
from tripbook.trips import cache, service
from tripbook.trips.repository import TripFilters
from tripbook.trips.schemas import (
    DepartureCreate,
    DepartureRead,
    SearchInstant,
    TripCreate,
    TripRead,
    TripSummary,
)
from tripbook.users.dependencies import OpsUser

router = APIRouter(
    prefix="/v1/trips", tags=["trips"], dependencies=[Depends(rate_limit("default"))]
)

PlaceQuery = Annotated[str | None, Query(min_length=1, max_length=100, pattern=NO_CONTROL_PATTERN)]
InstantQuery = Annotated[SearchInstant | None, Query()]


@router.get("", response_model=Page[TripSummary])
async def search_trips(
    session: SessionDep,
    origin: PlaceQuery = None,
    destination: PlaceQuery = None,
    departs_after: InstantQuery = None,
    departs_before: InstantQuery = None,
    min_seats: Annotated[int | None, Query(ge=1, le=100)] = None,
    cursor: CursorQuery = None,
    limit: LimitQuery = 20,
) -> Page[TripSummary]:
    if departs_after and departs_before and departs_after >= departs_before:
        # An empty window is a mistake, not a question whose answer is "nothing".
        raise RequestValidationError(
            [
                {
                    "loc": ("query", "departs_after"),
                    "msg": "must be earlier than departs_before",
                    "type": "value_error",
                }
            ]
        )
    filters = TripFilters(origin, destination, departs_after, departs_before, min_seats)
    return await service.search_trips(session, filters, cursor=cursor, limit=limit)


@router.get("/{trip_id}", response_model=TripRead)
async def get_trip(
    trip_id: IdPath, session: SessionDep, redis: RedisDep, settings: SettingsDep
) -> Response:
    cached = await cache.get_cached(redis, settings, trip_id)
    if cached is not None:
        return Response(cached, media_type="application/json")
    trip = await service.get_trip(session, trip_id)
    body = trip.model_dump_json().encode()
    await cache.store(redis, settings, trip_id, body)
    return Response(body, media_type="application/json")


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TripRead)
async def create_trip(body: TripCreate, session: SessionDep, _: OpsUser) -> TripRead:
    return await service.create_trip(session, data=body)


@router.post(
    "/{trip_id}/departures", status_code=status.HTTP_201_CREATED, response_model=DepartureRead
)
async def add_departure(
    trip_id: IdPath,
    body: DepartureCreate,
    session: SessionDep,
    redis: RedisDep,
    settings: SettingsDep,
    _: OpsUser,
) -> DepartureRead:
    departure = await service.add_departure(session, trip_id=trip_id, data=body)
    after_commit(session, lambda: cache.invalidate(redis, settings, trip_id))
    return departure
