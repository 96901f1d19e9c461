"""money states: unknown and refund_failed, refunds that name their charge, redelivery

Charges and refunds gain ``unknown`` (sent, outcome not known) and refunds ``refund_failed``
(definitely refused); a refund names its charge (one refund row per charge); open payments
and recent publications get the indexes reconciliation and redelivery scan; expiry now
writes down holds and declined reservations (payment_pending waits for its money).

Revision ID: 5c1e0d7a9b21
Revises: 77f4a21db99a
Create Date: 2026-12-01 00:10:00.000000+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5c1e0d7a9b21"
down_revision: str | None = "77f4a21db99a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_STATUSES = (
    "(kind = 'charge' AND status IN ('pending', 'unknown', 'succeeded', 'failed')) "
    "OR (kind = 'refund' AND status IN ('pending', 'unknown', 'succeeded', 'refund_failed'))"
)
OLD_STATUSES = "status IN ('pending', 'succeeded', 'failed')"


def upgrade() -> None:
    op.alter_column("payment", "status", type_=sa.String(length=20))
    op.drop_constraint(op.f("ck_payment_status_known"), "payment", type_="check")
    # A charge or refund already sent may have been applied: its outcome is unknown.
    op.execute("UPDATE payment SET status = 'unknown' WHERE status = 'pending' AND attempts > 0")
    op.execute(
        "UPDATE payment SET status = 'refund_failed' WHERE kind = 'refund' AND status = 'failed'"
    )
    op.create_check_constraint(op.f("ck_payment_status_known"), "payment", NEW_STATUSES)

    op.add_column("payment", sa.Column("charge_id", sa.Uuid(), nullable=True))
    # Refunds were keyed "refund-<charge id>".
    op.execute(
        "UPDATE payment SET charge_id = CAST(substr(idempotency_key, 8) AS uuid) WHERE kind = 'refund'"
    )
    op.create_foreign_key(
        op.f("fk_payment_charge_id_payment"),
        "payment",
        "payment",
        ["charge_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    op.create_unique_constraint(op.f("uq_payment_charge_id"), "payment", ["charge_id"])
    op.create_check_constraint(
        op.f("ck_payment_refund_has_charge"),
        "payment",
        "(kind = 'refund') = (charge_id IS NOT NULL)",
    )
    op.create_index(
        "ix_payment_open",
        "payment",
        ["updated_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'unknown')"),
    )
    op.create_index("ix_outbox_event_published_at", "outbox_event", ["published_at"], unique=False)

    op.drop_index(
        "ix_reservation_expiring",
        table_name="reservation",
        postgresql_where=sa.text("status IN ('held', 'payment_pending')"),
    )
    op.create_index(
        "ix_reservation_expiring",
        "reservation",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('held', 'payment_failed')"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_reservation_expiring",
        table_name="reservation",
        postgresql_where=sa.text("status IN ('held', 'payment_failed')"),
    )
    op.create_index(
        "ix_reservation_expiring",
        "reservation",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('held', 'payment_pending')"),
    )
    op.drop_index("ix_outbox_event_published_at", table_name="outbox_event")
    op.drop_index(
        "ix_payment_open",
        table_name="payment",
        postgresql_where=sa.text("status IN ('pending', 'unknown')"),
    )
    op.drop_constraint(op.f("ck_payment_refund_has_charge"), "payment", type_="check")
    op.drop_constraint(op.f("uq_payment_charge_id"), "payment", type_="unique")
    op.drop_constraint(op.f("fk_payment_charge_id_payment"), "payment", type_="foreignkey")
    op.drop_column("payment", "charge_id")

    op.drop_constraint(op.f("ck_payment_status_known"), "payment", type_="check")
    op.execute("UPDATE payment SET status = 'pending' WHERE status = 'unknown'")
    op.execute("UPDATE payment SET status = 'failed' WHERE status = 'refund_failed'")
    op.create_check_constraint(op.f("ck_payment_status_known"), "payment", OLD_STATUSES)
    op.alter_column("payment", "status", type_=sa.String(length=10))
