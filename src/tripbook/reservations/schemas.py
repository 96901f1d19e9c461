from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from tripbook.core.db import MAX_BIGINT
from tripbook.core.money import Money
from tripbook.core.text import FullName
from tripbook.reservations.models import ReservationStatus


class PassengerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    full_name: FullName = Field(examples=["Ana Silva"])


class ReservationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Strict: in lax mode `true` and "1" pass for integers, which the schema says they are not.
    departure_id: int = Field(strict=True, ge=1, le=MAX_BIGINT, examples=[1])
    seats: int = Field(
        strict=True,
        ge=1,
        le=100,
        description="bounded further by the server's maximum",
        examples=[1],
    )
    passengers: list[PassengerIn] = Field(
        min_length=1,
        max_length=100,
        description="one per seat",
        examples=[[{"full_name": "Ana Silva"}]],
    )


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
