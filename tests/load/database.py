"""The load test's database: seeded per run (``tests/support/world.py`` makes it fresh),
checked afterwards. Every function takes the URL, so the same checks also run against an
external ``--host``'s database given with ``--database-url``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as clock

import asyncpg
import httpx
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from tests.support import world
from tests.support.seats import seat_ledger
from tripbook.payments import ledger as payment_ledger
from tripbook.payments.gateway import HttpPaymentGateway

CATALOGUE = [
    ("Lisbon", "Porto", "Atlantic coast express", 2900, 200),
    ("Porto", "Lisbon", "Atlantic coast express (return)", 2900, 200),
    ("Madrid", "Barcelona", "Iberian high-speed", 4500, 300),
    ("Paris", "Amsterdam", "Canal cities sleeper", 8900, 120),
    ("Vienna", "Budapest", "Danube day cruise", 6500, 150),
    ("Lisbon", "Madrid", "Sud express", 5900, 80),
]
DAYS_AHEAD = 10
# Departures start this many days out: always beyond the 24 h cancellation deadline, so a
# booker cancelling a confirmed booking gets its refund (from day 1, a 09:00 departure is
# inside the deadline late in the UTC day, and the cancel a 409 CANCELLATION_CLOSED).
FIRST_DAY = 2
FLASH_TITLE = "Flash sale: Lisbon to Faro, one morning only"


@dataclass(frozen=True, slots=True)
class Seed:
    trips: int
    departures: int
    seats: int
    flash_departure_id: int
    flash_seats: int


async def seed(url: str, *, flash_seats: int) -> Seed:
    """A small catalogue of upcoming departures, and one flash-sale departure."""
    today = datetime.now(UTC).date()
    connection = await world.connect(url)
    try:
        async with connection.transaction():
            departures = seats = 0
            for origin, destination, title, price, capacity in CATALOGUE:
                trip_id = await _insert_trip(connection, origin, destination, title)
                for day in range(FIRST_DAY, FIRST_DAY + DAYS_AHEAD):
                    departs = datetime.combine(today + timedelta(days=day), clock(9), UTC)
                    await _insert_departure(connection, trip_id, departs, price, capacity)
                    departures += 1
                    seats += capacity
            flash_trip = await _insert_trip(connection, "Lisbon", "Faro", FLASH_TITLE)
            departs = datetime.combine(today + timedelta(days=3), clock(7), UTC)
            flash_id = await _insert_departure(connection, flash_trip, departs, 1900, flash_seats)
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()
    return Seed(
        trips=len(CATALOGUE) + 1,
        departures=departures + 1,
        seats=seats + flash_seats,
        flash_departure_id=flash_id,
        flash_seats=flash_seats,
    )


async def _insert_trip(
    connection: asyncpg.Connection, origin: str, destination: str, title: str
) -> int:
    trip_id = await connection.fetchval(
        "INSERT INTO trip (origin, destination, title, description, currency) "
        "VALUES ($1, $2, $3, 'Seeded for the load test.', 'EUR') RETURNING id",
        origin,
        destination,
        title,
    )
    return int(trip_id)


async def _insert_departure(
    connection: asyncpg.Connection, trip_id: int, departs: datetime, price: int, seats: int
) -> int:
    departure_id = await connection.fetchval(
        "INSERT INTO departure (trip_id, departs_at, arrives_at, price, seats_total, "
        "seats_available) VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
        trip_id,
        departs,
        departs + timedelta(hours=3),
        price,
        seats,
    )
    return int(departure_id)


async def now(url: str) -> datetime:
    """The database's clock: reservations of this run are those created after it."""
    connection = await world.connect(url)
    try:
        value: datetime = await connection.fetchval("SELECT now()")
        return value
    finally:
        await connection.close()


# --- checks ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeatReport:
    departures: int
    seats_total: int
    seats_available: int
    seats_held: int
    violations: list[dict[str, int]]

    @property
    def ok(self) -> bool:
        return not self.violations


async def seat_report(url: str) -> SeatReport:
    """DESIGN §4 on every departure (see ``tests/support/seats.py``)."""
    connection = await world.connect(url)
    try:
        ledger = await seat_ledger(connection)
    finally:
        await connection.close()
    return SeatReport(
        departures=len(ledger),
        seats_total=sum(row.seats_total for row in ledger),
        seats_available=sum(row.seats_available for row in ledger),
        seats_held=sum(row.seats_held for row in ledger),
        violations=[row.as_dict() for row in ledger if not row.balanced],
    )


async def departure_seats(url: str, departure_id: int) -> tuple[int, int] | None:
    connection = await world.connect(url)
    try:
        row = await connection.fetchrow(
            "SELECT seats_total, seats_available FROM departure WHERE id = $1", departure_id
        )
    finally:
        await connection.close()
    return (int(row["seats_total"]), int(row["seats_available"])) if row else None


@dataclass(frozen=True, slots=True)
class PaymentReport:
    """Reservations of this run that were paid for (a charge was requested), by status."""

    by_status: dict[str, int]
    bad: list[dict[str, str]] = field(default_factory=list)
    waited_s: float = 0.0
    open_payments: int = 0  # charges and refunds still pending or unknown (after the wait)
    failed_charges: int = 0  # reservations whose every charge definitely failed

    @property
    def paid(self) -> int:
        return sum(self.by_status.values())

    @property
    def ok(self) -> bool:
        return not self.bad


_PAID = (
    "SELECT r.id::text AS id, r.status, "
    "  bool_or(p.kind = 'charge' AND p.status = 'succeeded') AS charged, "
    "  coalesce(bool_and(p.status = 'failed') FILTER (WHERE p.kind = 'charge'), false) "
    "    AS charge_failed, "
    "  count(*) FILTER (WHERE p.status IN ('pending', 'unknown')) AS open "
    "FROM reservation AS r JOIN payment AS p ON p.reservation_id = r.id "
    "WHERE r.created_at >= $1 GROUP BY r.id, r.status"
)


async def _paid_reservations(url: str, since: datetime) -> list[asyncpg.Record]:
    connection = await world.connect(url)
    try:
        return list(await connection.fetch(_PAID, since))
    finally:
        await connection.close()


async def payment_report(
    url: str, since: datetime, *, drain_timeout_s: float, chaos: bool = False
) -> PaymentReport:
    """Wait (bounded) until no paid reservation is still ``payment_pending``, then judge:
    each must be ``confirmed``, or ``cancelled`` after its charge succeeded (a booker who
    cancelled a confirmed booking).

    ``chaos`` (the gateway was made slow and flaky): also wait until none of their charges
    and refunds is still ``pending`` or ``unknown``; any that is, is reported. Besides the
    above, ``payment_failed`` or ``expired`` is fine only where every charge of the
    reservation definitely failed (a timeout must never end there)."""
    started = time.monotonic()
    deadline = started + drain_timeout_s
    while True:
        rows = await _paid_reservations(url, since)
        pending = sum(1 for row in rows if row["status"] == "payment_pending")
        if chaos:
            pending += sum(int(row["open"]) for row in rows)
        if pending == 0 or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.5)  # poll interval while the worker drains
    by_status: dict[str, int] = {}
    bad = []
    failed_charges = 0
    for row in rows:
        status = str(row["status"])
        by_status[status] = by_status.get(status, 0) + 1
        fine = status == "confirmed" or (status == "cancelled" and bool(row["charged"]))
        definitely_failed = bool(row["charge_failed"]) and not row["charged"]
        if chaos and status in ("payment_failed", "expired") and definitely_failed:
            fine = True
            failed_charges += 1
        if chaos and int(row["open"]):
            fine = False
        if not fine:
            entry = {"reservation_id": str(row["id"]), "status": status}
            if chaos:
                entry["charge"] = (
                    "succeeded" if row["charged"] else "failed" if definitely_failed else "open"
                )
                entry["open_payments"] = str(row["open"])
            bad.append(entry)
    return PaymentReport(
        by_status=by_status,
        bad=bad,
        waited_s=time.monotonic() - started,
        open_payments=sum(int(row["open"]) for row in rows),
        failed_charges=failed_charges,
    )


# --- the ledger -----------------------------------------------------------------------------


async def open_payment_count(url: str) -> int:
    """Charges and refunds in the whole database whose outcome is still open."""
    connection = await world.connect(url)
    try:
        value = await connection.fetchval(
            "SELECT count(*) FROM payment WHERE status IN ('pending', 'unknown')"
        )
    finally:
        await connection.close()
    return int(value)


async def wait_for_settled_payments(url: str, *, timeout_s: float) -> tuple[int, float]:
    """Wait (bounded) until no charge or refund is open: (how many still are, seconds)."""
    started = time.monotonic()
    while True:
        still_open = await open_payment_count(url)
        if still_open == 0 or time.monotonic() - started >= timeout_s:
            return still_open, time.monotonic() - started
        await asyncio.sleep(0.5)  # poll interval while the worker and reconciliation settle


async def payment_states(url: str) -> dict[str, dict[str, int]]:
    """Every payment row of the database, by kind, then status."""
    connection = await world.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT kind, status, count(*) AS n FROM payment GROUP BY kind, status "
            "ORDER BY kind, status"
        )
    finally:
        await connection.close()
    states: dict[str, dict[str, int]] = {}
    for row in rows:
        states.setdefault(str(row["kind"]), {})[str(row["status"])] = int(row["n"])
    return states


async def ledger_report(url: str, gateway_url: str) -> list[str]:
    """``tripbook.payments.ledger.report`` for the whole database against the gateway at
    ``gateway_url``: one line per mismatch, [] when the two ledgers balance."""
    engine = create_async_engine(url)
    try:
        async with (
            AsyncSession(engine) as session,
            httpx.AsyncClient(base_url=gateway_url, timeout=5) as client,
        ):
            return await payment_ledger.report(session, HttpPaymentGateway(client))
    finally:
        await engine.dispose()
