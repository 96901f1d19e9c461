"""The bench database: created and migrated per run, seeded by SQL, checked after holds."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from argon2 import PasswordHasher
from pydantic import SecretStr
from redis import Redis as SyncRedis

from tests.bench import config
from tests.support import world
from tests.support.seats import seat_ledger
from tripbook.core.security import create_access_token
from tripbook.settings import Settings

USERS = 400
TRIPS = 200
DEPARTURES_PER_TRIP = 5  # 1,000 spread departures
SPREAD_SEATS = 1_000_000
HOT_SEATS = 100_000_000  # the API caps seats_total; the CHECK constraints do not


async def connect(database: str = config.DATABASE_NAME) -> asyncpg.Connection:
    return await world.connect(f"{config.PG_SERVER}/{database}")


async def server_version() -> str:
    connection = await connect("postgres")
    try:
        return str(await connection.fetchval("SHOW server_version"))
    finally:
        await connection.close()


async def recreate() -> None:
    """Drop and create the bench database: nothing of a previous run is left."""
    await world.recreate_database(config.DATABASE_URL)


def migrate() -> None:
    world.migrate(config.DATABASE_URL)


@dataclass(frozen=True, slots=True)
class Seed:
    tokens: list[str]
    trip_ids: list[int]
    spread_departure_ids: list[int]
    hot_departure_id: int


async def seed(settings: Settings) -> Seed:
    # argon2 costs ~100 ms a hash: one hash serves every bench account (none ever logs in).
    password_hash = PasswordHasher().hash("bench-password-never-used")
    departs_at = datetime.now(UTC) + timedelta(days=30)
    connection = await connect()
    try:
        async with connection.transaction():
            user_ids = await connection.fetch(
                "INSERT INTO user_account (email, password_hash, full_name, role) "
                "SELECT 'bench-' || n || '@example.com', $1, 'Bench User ' || n, 'customer' "
                "FROM generate_series(1, $2) AS n RETURNING id",
                password_hash,
                USERS,
            )
            trip_ids = await _insert_trips(connection, TRIPS + 1)
            spread = await connection.fetch(
                "INSERT INTO departure (trip_id, departs_at, arrives_at, price, seats_total, "
                "seats_available) "
                "SELECT trip_id, at, at + interval '3 hours', 2500, $3, $3 "
                "FROM unnest($1::bigint[]) AS trip_id, generate_series(0, $4 - 1) AS k, "
                "LATERAL (SELECT $2::timestamptz + k * interval '1 day' AS at) AS day "
                "ORDER BY trip_id, k RETURNING id",
                trip_ids[:TRIPS],
                departs_at,
                SPREAD_SEATS,
                DEPARTURES_PER_TRIP,
            )
            hot = await connection.fetchval(
                "INSERT INTO departure (trip_id, departs_at, arrives_at, price, seats_total, "
                "seats_available) "
                "VALUES ($1, $2::timestamptz, $2::timestamptz + interval '3 hours', 2500, $3, $3) "
                "RETURNING id",
                trip_ids[TRIPS],
                departs_at,
                HOT_SEATS,
            )
        await connection.execute("VACUUM ANALYZE")
    finally:
        await connection.close()
    tokens = [create_access_token(settings, user_id=row["id"], role="customer") for row in user_ids]
    return Seed(
        tokens=tokens,
        trip_ids=trip_ids[:TRIPS],
        spread_departure_ids=[row["id"] for row in spread],
        hot_departure_id=int(hot),
    )


def prepare(jwt_secret: str) -> Seed:
    """A fresh, migrated and seeded bench database; its accounts' tokens signed with
    ``jwt_secret`` (the servers' secret)."""
    asyncio.run(recreate())
    migrate()
    return asyncio.run(seed(Settings(env="production", jwt_secret=SecretStr(jwt_secret))))


async def _insert_trips(connection: asyncpg.Connection, count: int) -> list[int]:
    rows = await connection.fetch(
        "INSERT INTO trip (origin, destination, title, description, currency) "
        "SELECT 'Lisbon', 'Porto', 'Bench trip ' || n, "
        "'Along the coast, with a stop for lunch.', 'EUR' "
        "FROM generate_series(1, $1) AS n ORDER BY n RETURNING id",
        count,
    )
    return [row["id"] for row in rows]


async def reset_holds() -> None:
    """Every hold scenario starts from the same tables: no reservations, all seats free."""
    connection = await connect()
    try:
        await connection.execute(
            "TRUNCATE reservation, passenger, outbox_event, processed_event, idempotency_key "
            "CASCADE"
        )
        await connection.execute("UPDATE departure SET seats_available = seats_total")
        await connection.execute("VACUUM ANALYZE departure")
    finally:
        await connection.close()


@dataclass(frozen=True, slots=True)
class InvariantReport:
    departures: int
    reservations: int
    seats_held: int
    violations: list[dict[str, int]]

    @property
    def holds(self) -> bool:
        return not self.violations

    def describe(self) -> str:
        verdict = "OK" if self.holds else f"VIOLATED on {len(self.violations)} departures"
        return (
            f"{verdict}: {self.departures} departures, {self.reservations} reservations, "
            f"{self.seats_held} seats held; seats_total = seats_available + seats held"
        )


async def check_invariant() -> InvariantReport:
    """DESIGN §4 on every departure (see ``tests/support/seats.py``)."""
    connection = await connect()
    try:
        ledger = await seat_ledger(connection)
    finally:
        await connection.close()
    return InvariantReport(
        departures=len(ledger),
        reservations=sum(row.reservations for row in ledger),
        seats_held=sum(row.seats_held for row in ledger),
        violations=[row.as_dict() for row in ledger if not row.balanced],
    )


def redis_version() -> str:
    with SyncRedis.from_url(config.REDIS_URL) as redis:
        return str(redis.info("server")["redis_version"])


def clear_redis_keys() -> int:
    """Delete the bench's keys (cache, limiter, broker queues) from both Redis databases."""
    return world.clear_redis_keys([config.REDIS_URL, config.BROKER_URL], config.KEY_PREFIX)
