from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, Text, Uuid, func
from sqlalchemy.orm import Mapped, mapped_column

from tripbook.core.db import Base, TimestampMixin

KINDS = ("charge", "refund")
STATUSES = ("pending", "succeeded", "failed")


class Payment(TimestampMixin, Base):
    """One charge or refund attempt against the gateway, with its outcome."""

    __tablename__ = "payment"
    __table_args__ = (
        CheckConstraint(f"kind IN {KINDS}", name="kind_known"),
        CheckConstraint(f"status IN {STATUSES}", name="status_known"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    reservation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("reservation.id", ondelete="RESTRICT"), index=True
    )
    kind: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10), default="pending")
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    # Sent to the gateway, so a retried charge is applied at most once.
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    payment_token: Mapped[str | None] = mapped_column(String(255))
    gateway_reference: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())
