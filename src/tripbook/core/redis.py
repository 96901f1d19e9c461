"""The one async Redis client per process, and key naming."""

from __future__ import annotations

from redis.asyncio import Redis

from tripbook.settings import Settings


def create_redis(settings: Settings) -> Redis:
    # Short timeouts: Redis is a cache and a limiter here, never worth a hung request.
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_timeout_s,
        socket_connect_timeout=settings.redis_timeout_s,
        health_check_interval=30,
        decode_responses=False,
    )


def key(settings: Settings, *parts: str | int) -> str:
    return settings.redis_key_prefix + ":".join(str(part) for part in parts)
