from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, Uuid, func, text
from sqlalchemy.orm import Mapped, mapped_column

from tripbook.core.db import Base, TimestampMixin
from tripbook.payments.state import PaymentKind, PaymentStatus, check_transition, statuses

KINDS = tuple(kind.value for kind in PaymentKind)
CHARGE_STATUSES = statuses(PaymentKind.CHARGE)
REFUND_STATUSES = statuses(PaymentKind.REFUND)


class Payment(TimestampMixin, Base):
    """One charge or refund against the gateway, with its outcome (see ``state.py``)."""

    __tablename__ = "payment"
    __table_args__ = (
        CheckConstraint(f"kind IN {KINDS}", name="kind_known"),
        CheckConstraint(
            f"(kind = 'charge' AND status IN {CHARGE_STATUSES}) "
            f"OR (kind = 'refund' AND status IN {REFUND_STATUSES})",
            name="status_known",
        ),
        CheckConstraint("amount > 0", name="amount_positive"),
        # A refund names the charge it returns; a charge names none.
        CheckConstraint("(kind = 'refund') = (charge_id IS NOT NULL)", name="refund_has_charge"),
        # What reconciliation scans: only rows whose outcome is still open.
        Index(
            "ix_payment_open",
            "updated_at",
            postgresql_where=text("status IN ('pending', 'unknown')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    reservation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("reservation.id", ondelete="RESTRICT"), index=True
    )
    kind: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20), default=PaymentStatus.PENDING.value)
    # The charge a refund returns: one refund row per charge (a full refund).
    charge_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("payment.id", ondelete="RESTRICT"), unique=True
    )
    amount: Mapped[int]
    currency: Mapped[str] = mapped_column(String(3))
    # Sent to the gateway, so a retried charge is applied at most once.
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    payment_token: Mapped[str | None] = mapped_column(String(255))
    gateway_reference: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now(), onupdate=func.now())

    def move(self, target: PaymentStatus) -> None:
        """Make the allowed transition to ``target``; a final charge forgets its card token."""
        self.status = check_transition(self.kind, self.status, target).value
        self.updated_at = datetime.now(UTC)  # set here, so it is readable without a reload
        if target in (PaymentStatus.SUCCEEDED, PaymentStatus.FAILED):
            self.payment_token = None
