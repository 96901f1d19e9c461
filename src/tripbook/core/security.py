"""Password hashing (argon2, off the event loop) and JWT access tokens."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Literal

import anyio.to_thread
import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from tripbook.core.db import MAX_BIGINT
from tripbook.core.errors import Unauthenticated
from tripbook.settings import Settings

Role = Literal["customer", "ops"]
JWT_ALGORITHM = "HS256"


class TokenExpired(Unauthenticated):
    """The token was good and has run out: the client refreshes it or signs in again."""

    code = "TOKEN_EXPIRED"
    title = "The access token has expired"
    www_authenticate = 'Bearer error="invalid_token", error_description="The token expired"'


class InvalidToken(Unauthenticated):
    """Forged, malformed, or its account is gone: only signing in again helps."""

    code = "INVALID_TOKEN"
    title = "The access token is not valid"
    www_authenticate = 'Bearer error="invalid_token"'


@lru_cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@lru_cache
def _dummy_hash() -> str:
    # Verified against when the user does not exist, so both paths cost the same.
    return _hasher().hash("timing-equaliser")


async def warm_up_password_hashing() -> None:
    await anyio.to_thread.run_sync(_dummy_hash)


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(_hasher().hash, password)


async def verify_password(password: str, password_hash: str | None) -> bool:
    def verify() -> bool:
        try:
            return _hasher().verify(password_hash or _dummy_hash(), password)
        except (VerificationError, InvalidHashError):
            return False

    matched = await anyio.to_thread.run_sync(verify)
    return matched and password_hash is not None


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: int
    role: Role


def create_access_token(settings: Settings, *, user_id: int, role: Role) -> str:
    now = datetime.now(UTC)
    payload = {
        "sub": str(user_id),
        "role": role,
        "iat": now,
        "exp": now + timedelta(seconds=settings.jwt_ttl_s),
    }
    return jwt.encode(payload, settings.jwt_secret.get_secret_value(), algorithm=JWT_ALGORITHM)


def decode_access_token(settings: Settings, token: str) -> TokenClaims:
    """The token's claims, if it is signed with the secret and not expired.

    A signature is checked once per token and process (it is most of a request's JWT
    cost), so the rate limiter and the auth dependency may both ask; its expiry is
    checked on every use. tripbook revokes no token before its ``exp``, so a cached
    verdict is the one a fresh decode would give.
    """
    claims, expires_at = _verified_claims(settings.jwt_secret.get_secret_value(), token)
    if expires_at <= time.time():
        raise TokenExpired("Token expired")
    return claims


@lru_cache(maxsize=4096)
def _verified_claims(secret: str, token: str) -> tuple[TokenClaims, float]:
    """Claims and expiry (epoch seconds) of a validly signed token; errors are not cached."""
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[JWT_ALGORITHM],  # pinned: "none" and other algorithms are refused
            options={"require": ["exp", "sub", "role"]},
        )
        role = payload["role"]
        if role not in ("customer", "ops"):
            raise InvalidToken("Invalid token")
        user_id = int(payload["sub"])
        if not 1 <= user_id <= MAX_BIGINT:
            raise InvalidToken("Invalid token")
        return TokenClaims(user_id=user_id, role=role), float(payload["exp"])
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpired("Token expired") from exc
    except (jwt.InvalidTokenError, ValueError, TypeError) as exc:
        raise InvalidToken("Invalid token") from exc
