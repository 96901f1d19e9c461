"""The one async Redis client per process, and key naming."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis

from tripbook.settings import Settings

# Per process. A burst beyond it waits (up to the timeout) for a free connection: the
# default pool would fail at once, and the rate limiter would fail open for the burst.
MAX_CONNECTIONS = 100


def create_redis(settings: Settings) -> Redis:
    # Short timeouts: Redis is a cache and a limiter here, never worth a hung request.
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=MAX_CONNECTIONS,
        timeout=settings.redis_timeout_s,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        health_check_interval=30,
        decode_responses=False,
    )
    return Redis.from_pool(pool)


def key(settings: Settings, *parts: str | int) -> str:
    return settings.redis_key_prefix + ":".join(str(part) for part in parts)
