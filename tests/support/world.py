"""A run's own services, shared by the suite, the bench and the load run: a check that
PostgreSQL and Redis answer, a database made fresh and migrated, and the run's Redis keys
cleared. Each caller names its own database, Redis URLs and key prefix."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import asyncpg
from alembic import command
from redis import Redis as SyncRedis

from tests.environment import dsn
from tripbook.cli import alembic_config

# High enough never to refuse, low enough that the limiter still does its Redis work.
UNLIMITED = "100000000/minute"


def production_like(
    *, jwt_secret: str, database_url: str, redis_url: str, broker_url: str, key_prefix: str
) -> dict[str, str]:
    """What a local tripbook for the bench or the load run is told: production settings,
    JSON logs, its own database and key space, rate limits raised out of the way."""
    return {
        "TRIPBOOK_ENV": "production",
        "TRIPBOOK_JWT_SECRET": jwt_secret,
        "TRIPBOOK_DATABASE_URL": database_url,
        "TRIPBOOK_REDIS_URL": redis_url,
        "TRIPBOOK_BROKER_URL": broker_url,
        "TRIPBOOK_REDIS_KEY_PREFIX": key_prefix,
        "TRIPBOOK_LOG_FORMAT": "json",
        "TRIPBOOK_LOG_LEVEL": "INFO",
        "TRIPBOOK_RATE_LIMIT_DEFAULT": UNLIMITED,
        "TRIPBOOK_RATE_LIMIT_AUTH": UNLIMITED,
        "TRIPBOOK_RATE_LIMIT_RESERVATIONS": UNLIMITED,
    }


def unreachable(url: str, default_port: int) -> str | None:
    """Why the service at ``url`` does not answer, or None when it does."""
    parts = urlsplit(dsn(url))
    address = (parts.hostname or "127.0.0.1", parts.port or default_port)
    try:
        socket.create_connection(address, timeout=3).close()
    except OSError as exc:
        return f"not answering at {address[0]}:{address[1]} ({exc})"
    return None


async def connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(dsn(url), timeout=10)


async def recreate_database(url: str) -> None:
    """Drop and create the database of ``url``: nothing of a previous run is left."""
    server, _, name = url.rpartition("/")
    connection = await connect(f"{server}/postgres")
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def migrate(url: str) -> None:
    """Alembic to head, synchronously: its async env.py runs its own event loop."""
    command.upgrade(alembic_config(url), "head")


def clear_redis_keys(urls: list[str], prefix: str) -> int:
    """Delete the run's keys (cache, limiter, idempotency, broker queues)."""
    deleted = 0
    for url in urls:
        with SyncRedis.from_url(url) as redis:
            batch: list[bytes] = []
            for key in redis.scan_iter(match=f"{prefix}*", count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    deleted += int(redis.unlink(*batch))
                    batch.clear()
            if batch:
                deleted += int(redis.unlink(*batch))
    return deleted
