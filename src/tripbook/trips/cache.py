"""A few seconds of Redis cache for trip detail; Redis trouble means a miss, never an error."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from tripbook.core.logging import get_logger
from tripbook.core.redis import key
from tripbook.settings import Settings

log = get_logger(__name__)


def trip_key(settings: Settings, trip_id: int) -> str:
    return key(settings, "trip", trip_id)


async def get_cached(redis: Redis, settings: Settings, trip_id: int) -> bytes | None:
    if settings.trip_cache_ttl_s <= 0:
        return None
    try:
        value = await redis.get(trip_key(settings, trip_id))
        return value if isinstance(value, bytes) else None
    except (RedisError, OSError) as exc:
        log.warning("trip_cache_unavailable", error=type(exc).__name__)
        return None


async def store(redis: Redis, settings: Settings, trip_id: int, body: bytes) -> None:
    if settings.trip_cache_ttl_s <= 0:
        return
    try:
        await redis.set(trip_key(settings, trip_id), body, ex=settings.trip_cache_ttl_s)
    except (RedisError, OSError) as exc:
        log.warning("trip_cache_unavailable", error=type(exc).__name__)


async def invalidate(redis: Redis, settings: Settings, trip_id: int) -> None:
    """Called after a hold or release commits; the TTL bounds staleness if this fails."""
    if settings.trip_cache_ttl_s <= 0:
        return  # nothing is cached: no round trip per hold
    try:
        await redis.delete(trip_key(settings, trip_id))
    except (RedisError, OSError) as exc:
        log.warning("trip_cache_unavailable", error=type(exc).__name__)
