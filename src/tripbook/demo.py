"""Demo data for ``make run``: a small catalogue with upcoming departures and two accounts.

Idempotent: trips are matched by title, and departures are only added while a trip has
fewer than a week of upcoming ones.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

from sqlalchemy import func, select

from tripbook.core.db import create_engine, create_sessionmaker, unit_of_work
from tripbook.settings import Settings
from tripbook.trips.models import Departure, Trip
from tripbook.users.commands import upsert_user

CATALOGUE = [
    ("Lisbon", "Porto", "Atlantic coast express", 2900, 50),
    ("Porto", "Lisbon", "Atlantic coast express (return)", 2900, 50),
    ("Madrid", "Barcelona", "Iberian high-speed", 4500, 120),
    ("Paris", "Amsterdam", "Canal cities sleeper", 8900, 40),
    ("Vienna", "Budapest", "Danube day cruise", 6500, 80),
]
DEMO_CUSTOMER = ("demo@tripbook.local", "demo-password-1", "Demo Customer")
DEMO_OPS = ("ops@tripbook.local", "ops-password-1", "Demo Operator")
DAYS_AHEAD = 14


async def seed(settings: Settings) -> str:
    if settings.env == "production":
        raise RuntimeError("refusing to seed demo data into a production environment")
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    added_trips = added_departures = 0
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            today = datetime.now(UTC).date()
            for origin, destination, title, price, seats in CATALOGUE:
                trip = (
                    await session.execute(select(Trip).where(Trip.title == title))
                ).scalar_one_or_none()
                if trip is None:
                    trip = Trip(origin=origin, destination=destination, title=title, currency="EUR")
                    session.add(trip)
                    await session.flush()
                    added_trips += 1
                upcoming = await session.scalar(
                    select(func.count())
                    .select_from(Departure)
                    .where(Departure.trip_id == trip.id, Departure.departs_at > func.now())
                )
                if (upcoming or 0) >= 7:
                    continue
                for day in range(1, DAYS_AHEAD + 1):
                    departs = datetime.combine(today + timedelta(days=day), time(9), UTC)
                    session.add(
                        Departure(
                            trip_id=trip.id,
                            departs_at=departs,
                            arrives_at=departs + timedelta(hours=3),
                            price=price,
                            seats_total=seats,
                            seats_available=seats,
                        )
                    )
                    added_departures += 1
        customer_email, customer_password, customer_name = DEMO_CUSTOMER
        await upsert_user(
            settings,
            email=customer_email,
            password=customer_password,
            full_name=customer_name,
            role="customer",
        )
        ops_email, ops_password, ops_name = DEMO_OPS
        await upsert_user(
            settings, email=ops_email, password=ops_password, full_name=ops_name, role="ops"
        )
    finally:
        await engine.dispose()
    return (
        f"demo data ready: {added_trips} trips and {added_departures} departures added; "
        f"customer {DEMO_CUSTOMER[0]} / {DEMO_CUSTOMER[1]}, ops {DEMO_OPS[0]} / {DEMO_OPS[1]}"
    )
