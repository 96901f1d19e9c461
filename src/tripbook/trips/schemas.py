from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from tripbook.core.money import Money
from tripbook.core.text import LINE_PATTERN, TEXT_PATTERN, Stripped

# What JSON Schema's `date-time` (RFC 3339) admits. pydantic alone also reads a number, or a
# numeric string, as Unix time, and a space in place of the `T`.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def _rfc3339_text(value: object) -> object:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _RFC3339.fullmatch(value):
        return value.upper()  # RFC 3339 allows a lowercase t and z; pydantic does not
    raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2030-06-01T08:30:00Z")


def _in_utc(value: datetime) -> datetime:
    # 9999-12-31T23:00:00-05:00 parses, but is past the last instant Python (and so the
    # driver) can hold in UTC: it used to overflow there, a 500.
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("date-time out of range") from exc


# An instant, as an RFC 3339 string with an offset; held in UTC.
Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339_text), AfterValidator(_in_utc)]

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def _date_or_rfc3339_text(value: object) -> object:
    if isinstance(value, str) and _DATE.fullmatch(value):
        return f"{value}T00:00:00Z"  # a day alone starts at midnight UTC
    return _rfc3339_text(value)


# A search bound: an instant as above, or a date alone, read as midnight UTC.
SearchInstant = Annotated[
    AwareDatetime,
    BeforeValidator(_date_or_rfc3339_text),
    AfterValidator(_in_utc),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "string", "format": "date"},
            ],
            "description": "RFC 3339 date-time with an offset, or a date (midnight UTC)",
        }
    ),
]


Place = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=LINE_PATTERN), Stripped
]
Title = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=LINE_PATTERN), Stripped
]
Description = Annotated[str, StringConstraints(max_length=5000, pattern=TEXT_PATTERN), Stripped]


class TripCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    origin: Place = Field(examples=["Lisbon"])
    destination: Place = Field(examples=["Porto"])
    title: Title = Field(examples=["Douro valley by train"])
    description: Description = Field(default="", examples=["Three days along the river."])
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$", examples=["EUR"])


class DepartureCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Examples far ahead: a departure must be in the future.
    departs_at: Instant = Field(examples=["2099-06-01T08:30:00+01:00"])
    arrives_at: Instant = Field(examples=["2099-06-01T11:45:00+01:00"])
    # Strict: in lax mode `false` and "40" pass for integers, which the schema says they are not.
    price: int = Field(
        strict=True,
        ge=0,
        le=10_000_000,
        description="minor units of the trip's currency",
        examples=[3900],
    )
    seats_total: int = Field(strict=True, ge=1, le=10_000, examples=[40])

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
