"""The money state machine (DESIGN §6), in one place, for charges and refunds alike.

    charge:  pending ──send──▶ unknown ──definite answer──▶ succeeded | failed
                │                 ▲  │
                │                 └──┘  timeout, 5xx, 409, crash: still unknown
                └──never sent, reservation closed──▶ failed

    refund:  pending ──send──▶ unknown ──▶ succeeded | refund_failed ──ops retry──▶ pending

A row becomes ``unknown`` *before* the gateway is called, so a crash mid-call leaves it
``unknown``, never ``pending`` nor ``failed``: only a definite answer from the gateway (or
the certainty that nothing was sent) makes it final. Reconciliation settles the rest.
"""

from __future__ import annotations

import enum

from tripbook.payments.exceptions import InvalidPaymentState


class PaymentKind(enum.StrEnum):
    CHARGE = "charge"
    REFUND = "refund"


class PaymentStatus(enum.StrEnum):
    PENDING = "pending"  # recorded, not sent yet
    UNKNOWN = "unknown"  # sent (or about to be); the outcome is not known
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a charge the gateway definitely refused, or one never sent
    REFUND_FAILED = "refund_failed"  # a refund the gateway definitely refused


P = PaymentStatus
TRANSITIONS: dict[PaymentKind, dict[PaymentStatus, frozenset[PaymentStatus]]] = {
    PaymentKind.CHARGE: {
        P.PENDING: frozenset({P.UNKNOWN, P.FAILED}),
        P.UNKNOWN: frozenset({P.UNKNOWN, P.SUCCEEDED, P.FAILED}),
        P.SUCCEEDED: frozenset(),
        P.FAILED: frozenset(),
    },
    PaymentKind.REFUND: {
        P.PENDING: frozenset({P.UNKNOWN}),
        P.UNKNOWN: frozenset({P.UNKNOWN, P.SUCCEEDED, P.REFUND_FAILED}),
        P.SUCCEEDED: frozenset(),
        P.REFUND_FAILED: frozenset({P.PENDING}),
    },
}

# Statuses reconciliation keeps asking the gateway about.
OPEN = frozenset({P.PENDING, P.UNKNOWN})


def statuses(kind: PaymentKind) -> tuple[str, ...]:
    return tuple(status.value for status in TRANSITIONS[kind])


def check_transition(kind: str, current: str, target: PaymentStatus) -> PaymentStatus:
    """Return ``target``, or raise ``InvalidPaymentState`` when ``current`` cannot reach it."""
    allowed = TRANSITIONS[PaymentKind(kind)].get(PaymentStatus(current), frozenset())
    if target not in allowed:
        raise InvalidPaymentState(
            f"A {current} {kind} cannot become {target.value}",
            kind=kind,
            current=current,
            target=target.value,
        )
    return target
