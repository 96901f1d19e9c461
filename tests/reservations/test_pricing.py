"""Pricing: integer minor units, every seat at the departure's price."""

from __future__ import annotations

import pytest

from tripbook.reservations.service import total_price


@pytest.mark.parametrize(
    ("unit_price", "seats", "total"),
    [(2500, 1, 2500), (2500, 3, 7500), (0, 4, 0), (9_999_999, 9, 89_999_991)],
)
def test_total_is_price_times_seats(unit_price: int, seats: int, total: int) -> None:
    assert total_price(unit_price, seats) == total


@pytest.mark.parametrize(("unit_price", "seats"), [(-1, 1), (100, 0), (100, -2)])
def test_nonsense_is_refused(unit_price: int, seats: int) -> None:
    with pytest.raises(ValueError, match="cannot price"):
        total_price(unit_price, seats)
