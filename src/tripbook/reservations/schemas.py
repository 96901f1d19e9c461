from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from tripbook.core.db import MAX_BIGINT
from tripbook.core.money import Money
from tripbook.reservations.models import ReservationStatus


class PassengerIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    full_name: str = Field(min_length=1, max_length=200)


class ReservationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    departure_id: int = Field(ge=1, le=MAX_BIGINT)
    seats: int = Field(ge=1, le=100, description="bounded further by the server's maximum")
    passengers: list[PassengerIn] = Field(min_length=1, max_length=100)


class PassengerRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    full_name: str


class ReservationRead(BaseModel):
    id: uuid.UUID
    status: ReservationStatus
    departure_id: int
    seats: int
    passengers: list[PassengerRead]
    total: Money
    expires_at: datetime
    created_at: datetime
    updated_at: datetime
