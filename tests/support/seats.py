"""DESIGN §4's seat invariant, one query for the tests, the bench and the load run.

For each departure: seats_total = seats_available + seats of held, payment_pending and
confirmed reservations, and seats_available is never negative.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import asyncpg

SEAT_HOLDING = ("held", "payment_pending", "confirmed")

LEDGER = """
    SELECT d.id AS departure_id, d.seats_total, d.seats_available,
           coalesce(r.seats, 0) AS seats_held, coalesce(r.reservations, 0) AS reservations
    FROM departure AS d
    LEFT JOIN (
        SELECT departure_id, sum(seats) AS seats, count(*) AS reservations
        FROM reservation WHERE status = ANY($1::text[]) GROUP BY departure_id
    ) AS r ON r.departure_id = d.id
    WHERE $2::bigint IS NULL OR d.id = $2
    ORDER BY d.id
"""


@dataclass(frozen=True, slots=True)
class DepartureSeats:
    departure_id: int
    seats_total: int
    seats_available: int
    seats_held: int  # by held, payment_pending and confirmed reservations
    reservations: int

    @property
    def balanced(self) -> bool:
        return (
            self.seats_available >= 0 and self.seats_total == self.seats_available + self.seats_held
        )

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


async def seat_ledger(
    connection: asyncpg.Connection, departure_id: int | None = None
) -> list[DepartureSeats]:
    """Every departure's seats (or one departure's), in id order."""
    rows = await connection.fetch(LEDGER, list(SEAT_HOLDING), departure_id)
    return [DepartureSeats(**{name: int(value) for name, value in row.items()}) for row in rows]


async def departure_ledger(connection: asyncpg.Connection, departure_id: int) -> DepartureSeats:
    [seats] = await seat_ledger(connection, departure_id)
    return seats


async def departure_seats_at(dsn: str, departure_id: int) -> DepartureSeats:
    """``departure_ledger`` on a connection of its own, to the database at ``dsn``."""
    connection = await asyncpg.connect(dsn)
    try:
        return await departure_ledger(connection, departure_id)
    finally:
        await connection.close()
