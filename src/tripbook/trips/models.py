from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Identity, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tripbook.core.db import Base, TimestampMixin


class Trip(TimestampMixin, Base):
    __tablename__ = "trip"
    __table_args__ = (
        # Search matches places case-insensitively.
        Index("ix_trip_route", text("lower(origin)"), text("lower(destination)"), "id"),
        CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    origin: Mapped[str] = mapped_column(String(100))
    destination: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    currency: Mapped[str] = mapped_column(String(3), default="EUR")

    departures: Mapped[list[Departure]] = relationship(
        back_populates="trip", lazy="raise", order_by="Departure.departs_at"
    )


class Departure(TimestampMixin, Base):
    """A dated run of a trip. Its row is the inventory that seat holds lock."""

    __tablename__ = "departure"
    __table_args__ = (
        CheckConstraint("seats_total > 0", name="seats_total_positive"),
        CheckConstraint(
            "seats_available BETWEEN 0 AND seats_total", name="seats_available_in_range"
        ),
        CheckConstraint("price >= 0", name="price_not_negative"),
        CheckConstraint("arrives_at > departs_at", name="arrives_after_departs"),
        Index("ix_departure_trip_departs", "trip_id", "departs_at"),
        Index("ix_departure_departs_at", "departs_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    trip_id: Mapped[int] = mapped_column(ForeignKey("trip.id", ondelete="RESTRICT"))
    departs_at: Mapped[datetime]
    arrives_at: Mapped[datetime]
    price: Mapped[int] = mapped_column(BigInteger)  # minor units of the trip's currency
    seats_total: Mapped[int]
    seats_available: Mapped[int]

    trip: Mapped[Trip] = relationship(back_populates="departures", lazy="raise")
