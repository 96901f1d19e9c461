from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Uuid, func, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from tripbook.core.db import Base, TimestampMixin


class ReservationStatus(enum.StrEnum):
    HELD = "held"
    PAYMENT_PENDING = "payment_pending"
    PAYMENT_FAILED = "payment_failed"
    CONFIRMED = "confirmed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


STATUS_VALUES = tuple(status.value for status in ReservationStatus)
SEAT_HOLDING = (
    ReservationStatus.HELD,
    ReservationStatus.PAYMENT_PENDING,
    ReservationStatus.CONFIRMED,
)


class Reservation(TimestampMixin, Base):
    __tablename__ = "reservation"
    __table_args__ = (
        CheckConstraint("seats > 0", name="seats_positive"),
        CheckConstraint("total_amount >= 0", name="total_not_negative"),
        CheckConstraint(f"status IN {STATUS_VALUES}", name="status_known"),
        Index("ix_reservation_user_created", "user_id", "created_at", "id"),
        Index("ix_reservation_departure_status", "departure_id", "status"),
        # Only live holds are ever swept for expiry, so only they are indexed.
        Index(
            "ix_reservation_expiring",
            "expires_at",
            postgresql_where=text("status IN ('held', 'payment_pending')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[int] = mapped_column(ForeignKey("user_account.id", ondelete="RESTRICT"))
    departure_id: Mapped[int] = mapped_column(ForeignKey("departure.id", ondelete="RESTRICT"))
    seats: Mapped[int]
    status: Mapped[str] = mapped_column(String(20), default=ReservationStatus.HELD.value)
    total_amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    expires_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())

    passengers: Mapped[list[Passenger]] = relationship(
        back_populates="reservation", lazy="raise", order_by="Passenger.position"
    )


class Passenger(Base):
    __tablename__ = "passenger"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    reservation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("reservation.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int]
    full_name: Mapped[str] = mapped_column(String(200))

    reservation: Mapped[Reservation] = relationship(back_populates="passengers", lazy="raise")
