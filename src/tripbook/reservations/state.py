"""The reservation state machine (DESIGN §4), in one place.

    held ──pay──▶ payment_pending ──settled──▶ confirmed
     │  ▲              │    │
     │  └──retry── payment_failed ──▶ expired
     ├──────────────▶ expired ◀── payment_pending
     └─────────────▶ cancelled ◀── payment_pending | confirmed

Seats are held in ``held``, ``payment_pending`` and ``confirmed``; every transition out of
those into ``expired`` or ``cancelled`` (or into ``payment_failed``) releases them.
"""

from __future__ import annotations

from tripbook.reservations.exceptions import InvalidReservationState
from tripbook.reservations.models import ReservationStatus as S

TRANSITIONS: dict[S, frozenset[S]] = {
    S.HELD: frozenset({S.PAYMENT_PENDING, S.EXPIRED, S.CANCELLED}),
    S.PAYMENT_PENDING: frozenset({S.CONFIRMED, S.PAYMENT_FAILED, S.EXPIRED, S.CANCELLED}),
    S.PAYMENT_FAILED: frozenset({S.HELD, S.EXPIRED}),
    S.CONFIRMED: frozenset({S.CANCELLED}),
    S.EXPIRED: frozenset(),
    S.CANCELLED: frozenset(),
}

HOLDS_SEATS = frozenset({S.HELD, S.PAYMENT_PENDING, S.CONFIRMED})


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
