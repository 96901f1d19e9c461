"""The state machine of DESIGN §4, exhaustively."""

from __future__ import annotations

import itertools

import pytest

from tripbook.reservations.exceptions import InvalidReservationState
from tripbook.reservations.models import ReservationStatus as S
from tripbook.reservations.state import check_transition, releases_seats

ALLOWED = {
    (S.HELD, S.PAYMENT_PENDING),
    (S.HELD, S.EXPIRED),
    (S.HELD, S.CANCELLED),
    (S.PAYMENT_PENDING, S.CONFIRMED),
    (S.PAYMENT_PENDING, S.PAYMENT_FAILED),
    (S.PAYMENT_PENDING, S.EXPIRED),
    (S.PAYMENT_PENDING, S.CANCELLED),
    (S.PAYMENT_FAILED, S.PAYMENT_PENDING),
    (S.PAYMENT_FAILED, S.EXPIRED),
    (S.CONFIRMED, S.CANCELLED),
}


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_allowed_transition(current: S, target: S) -> None:
    assert check_transition(current.value, target) is target


@pytest.mark.parametrize(
    ("current", "target"),
    sorted(set(itertools.product(S, S)) - ALLOWED),
)
def test_every_other_transition_is_refused(current: S, target: S) -> None:
    with pytest.raises(InvalidReservationState) as raised:
        check_transition(current.value, target)

    assert raised.value.status == 409
    assert raised.value.context == {"current": current.value, "target": target.value}


@pytest.mark.parametrize(
    ("current", "target", "released"),
    [
        (S.HELD, S.EXPIRED, True),
        (S.HELD, S.CANCELLED, True),
        (S.PAYMENT_PENDING, S.PAYMENT_FAILED, True),
        (S.CONFIRMED, S.CANCELLED, True),
        (S.HELD, S.PAYMENT_PENDING, False),
        (S.PAYMENT_PENDING, S.CONFIRMED, False),
        (S.PAYMENT_FAILED, S.EXPIRED, False),
    ],
)
def test_seats_are_released_exactly_when_leaving_a_seat_holding_state(
    current: S, target: S, released: bool
) -> None:
    assert releases_seats(current, target) is released
