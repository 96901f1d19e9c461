"""Rate limits per user, else per trusted client IP, counted in Redis without blocking.

slowapi's own check is synchronous (laurentS/slowapi#130) and would block the event loop
on every Redis round trip, so the limits are enforced with the async API of ``limits``,
the library slowapi is built on, using the same "N/period" notation.
If Redis is unreachable the limiter fails open and says so in the log: losing rate limiting
for a minute is better than refusing every booking.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable

from fastapi import Request
from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis
from redis.exceptions import RedisError

from tripbook.core.clientip import client_ip
from tripbook.core.errors import RateLimited, Unauthenticated
from tripbook.core.logging import get_logger
from tripbook.core.security import decode_access_token
from tripbook.settings import Settings

log = get_logger(__name__)

# Scopes whose limit is a setting, ``rate_limit_<scope>``.
CONFIGURED_SCOPES = ("default", "auth", "reservations")
# Scopes counted per client address, whatever bearer token comes along: there the token
# is the caller's to choose (three accounts' tokens would be three budgets of password
# guesses against a fourth).
BY_ADDRESS = frozenset({"auth"})


class RateLimiter:
    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.settings = settings
        self.enabled = settings.rate_limit_enabled
        # Shares the app's connection pool (and its timeouts): one pool to size and close.
        self._storage = RedisStorage(
            settings.redis_url.replace("redis://", "async+redis://", 1),
            implementation="redispy",
            key_prefix=f"{settings.redis_key_prefix}ratelimit",
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]  # stub too narrow
        )
        self._limiter = MovingWindowRateLimiter(self._storage)
        # From the settings this app was built with, never the process-wide ones.
        self.limits: dict[str, RateLimitItem] = {
            scope: parse(getattr(settings, f"rate_limit_{scope}")) for scope in CONFIGURED_SCOPES
        }

    def caller_key(self, request: Request, scope: str) -> str:
        authorization = request.headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scope not in BY_ADDRESS and scheme.lower() == "bearer" and token:
            try:
                return f"user:{decode_access_token(self.settings, token).user_id}"
            except Unauthenticated:
                pass  # the auth dependency answers 401; count it against the address
        return f"ip:{client_ip(request, self.settings.trusted_proxies)}"

    async def check(
        self,
        request: Request,
        scope: str,
        fallback: RateLimitItem | None = None,
        *,
        key: str | None = None,
    ) -> None:
        """Count one hit of ``scope`` against the caller (or against ``key``, e.g. the
        account a login targets); raise ``RateLimited`` past the limit."""
        if not self.enabled:
            return
        limit = self.limits.get(scope, fallback)
        assert limit is not None, f"rate_limit({scope!r}) needs a limit"
        caller = key or self.caller_key(request, scope)
        try:
            allowed = await self._limiter.hit(limit, scope, caller)
            if allowed:
                return
            reset_at, _ = await self._limiter.get_window_stats(limit, scope, caller)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("rate_limit_unavailable", scope=scope, error=type(exc).__name__)
            return
        retry_after = max(1, math.ceil(reset_at - time.time()))
        raise RateLimited(f"Rate limit of {limit} exceeded", retry_after_s=retry_after, scope=scope)


def rate_limit(scope: str, limit: str | None = None) -> Callable[[Request], Awaitable[None]]:
    """A route dependency: ``dependencies=[Depends(rate_limit("auth"))]``.

    A scope with a setting (``default``, ``auth``, ``reservations``) always counts against
    the limit of the app's own settings, looked up per request, so ``create_app(settings)``
    is obeyed; ``limit`` only serves a scope that has no setting.
    """
    if limit is None and scope not in CONFIGURED_SCOPES:
        raise ValueError(f"scope {scope!r} has no setting: pass its limit")
    fallback = parse(limit) if limit else None

    async def dependency(request: Request) -> None:
        limiter: RateLimiter = request.app.state.rate_limiter
        await limiter.check(request, scope, fallback)

    return dependency
