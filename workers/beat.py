"""The periodic jobs beat sends (run beat as a single replica; the jobs are safe anyway)."""

from __future__ import annotations

from typing import Any

from tripbook.settings import Settings


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    def every(interval_s: float) -> dict[str, Any]:
        # A tick nobody ran before the next one is due is dropped, not piled up.
        return {"schedule": interval_s, "options": {"expires": interval_s}}

    return {
        "expire-holds": {
            "task": "maintenance.expire_holds",
            **every(settings.hold_expiry_interval_s),
        },
        "sweep-outbox": {
            "task": "maintenance.sweep_outbox",
            **every(settings.outbox_sweep_interval_s),
        },
        "reconcile-payments": {
            "task": "payments.reconcile",
            **every(settings.payment_reconcile_interval_s),
        },
        "purge-idempotency-keys": {
            "task": "maintenance.purge_idempotency_keys",
            **every(settings.idempotency_purge_interval_s),
        },
    }
