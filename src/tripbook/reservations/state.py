"""The reservation state machine (DESIGN §4), in one place.

    held ──pay──▶ payment_pending ──settled──▶ confirmed
     │                 │     ▲
     │          declined     └──pay again (re-takes the seats)──┐
     │                 ▼                                        │
     │           payment_failed ────────────────────────────────┘
     │                 │
     ├─────────────────┴──▶ expired ◀── payment_pending (never charged)
     └─────────────▶ cancelled ◀── payment_pending | confirmed

Seats are held in ``held``, ``payment_pending`` and ``confirmed``: a transition out of
those into another state releases them, and paying again after a decline takes them back.
A ``held`` or ``payment_failed`` reservation past ``expires_at`` reads as ``expired``
before the sweep has written it.
"""

from __future__ import annotations

from datetime import datetime

from tripbook.reservations.exceptions import InvalidReservationState
from tripbook.reservations.models import ReservationStatus as S

TRANSITIONS: dict[S, frozenset[S]] = {
    S.HELD: frozenset({S.PAYMENT_PENDING, S.EXPIRED, S.CANCELLED}),
    S.PAYMENT_PENDING: frozenset({S.CONFIRMED, S.PAYMENT_FAILED, S.EXPIRED, S.CANCELLED}),
    S.PAYMENT_FAILED: frozenset({S.PAYMENT_PENDING, S.EXPIRED}),
    S.CONFIRMED: frozenset({S.CANCELLED}),
    S.EXPIRED: frozenset(),
    S.CANCELLED: frozenset(),
}

HOLDS_SEATS = frozenset({S.HELD, S.PAYMENT_PENDING, S.CONFIRMED})
# States that end at ``expires_at`` by themselves (the sweep only writes it down).
LAPSES = frozenset({S.HELD, S.PAYMENT_FAILED})


def can_transition(current: S, target: S) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: str, target: S) -> S:
    """Return the target state, or raise ``InvalidReservationState``."""
    state = S(current)
    if not can_transition(state, target):
        raise InvalidReservationState(
            f"A {state.value} reservation cannot become {target.value}",
            current=state.value,
            target=target.value,
        )
    return target


def releases_seats(current: S, target: S) -> bool:
    return current in HOLDS_SEATS and target not in HOLDS_SEATS


def takes_seats(current: S, target: S) -> bool:
    return current not in HOLDS_SEATS and target in HOLDS_SEATS


def effective_status(status: str, expires_at: datetime, now: datetime) -> S:
    """The status a client sees: a lapsed hold is ``expired`` even before the sweep."""
    state = S(status)
    return S.EXPIRED if state in LAPSES and expires_at <= now else state
