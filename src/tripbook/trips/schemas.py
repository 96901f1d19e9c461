from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from tripbook.core.money import Money

Place = Field(min_length=1, max_length=100)


class TripCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    origin: str = Place
    destination: str = Place
    title: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=5000)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")


class DepartureCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    departs_at: AwareDatetime
    arrives_at: AwareDatetime
    price: int = Field(ge=0, le=10_000_000, description="minor units of the trip's currency")
    seats_total: int = Field(ge=1, le=10_000)

    @model_validator(mode="after")
    def _arrives_after_departs(self) -> DepartureCreate:
        if self.arrives_at <= self.departs_at:
            raise ValueError("arrives_at must be after departs_at")
        return self


class DepartureRead(BaseModel):
    id: int
    trip_id: int
    departs_at: datetime
    arrives_at: datetime
    price: Money
    seats_total: int
    seats_available: int


class TripSummary(BaseModel):
    id: int
    origin: str
    destination: str
    title: str
    currency: str
    next_departure_at: datetime | None
    from_price: Money | None


class TripRead(BaseModel):
    id: int
    origin: str
    destination: str
    title: str
    description: str
    currency: str
    departures: list[DepartureRead]
