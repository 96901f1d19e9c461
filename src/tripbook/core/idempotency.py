"""Stored responses for ``Idempotency-Key`` (DESIGN §5): replay, mismatch, in-flight."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import BigInteger, ForeignKey, Index, SmallInteger, String, delete, func, select
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from tripbook.core.db import Base, TimestampMixin
from tripbook.core.errors import Conflict, InvalidInput


class IdempotencyRecord(TimestampMixin, Base):
    __tablename__ = "idempotency_key"
    __table_args__ = (Index("ix_idempotency_key_expires_at", "expires_at"),)

    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("user_account.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int] = mapped_column(SmallInteger)
    response_body: Mapped[dict[str, Any]] = mapped_column(JSONB)
    expires_at: Mapped[datetime]


class IdempotencyKeyReused(InvalidInput):
    code = "IDEMPOTENCY_KEY_REUSED"
    title = "Idempotency-Key was already used for a different request"


class IdempotentRequestInProgress(Conflict):
    code = "IDEMPOTENT_REQUEST_IN_PROGRESS"
    title = "A request with this Idempotency-Key is still being processed"

    def __init__(self) -> None:
        super().__init__()
        self.retry_after_s = 1


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: dict[str, Any]


def fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


def _lock_id(user_id: int, key: str) -> int:
    digest = hashlib.sha256(f"{user_id}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def claim(
    session: AsyncSession, *, user_id: int, key: str, request_fingerprint: str
) -> StoredResponse | None:
    """Claim the key inside the request's own transaction.

    A transaction-scoped advisory lock marks the request in flight: a concurrent request
    with the same key fails to take it and is told to retry, and a crash or rollback
    releases it with nothing stored, so a retry does the work. Returns the stored
    response of an earlier request, or None when the caller should do the work.
    """
    locked = await session.scalar(select(func.pg_try_advisory_xact_lock(_lock_id(user_id, key))))
    if not locked:
        raise IdempotentRequestInProgress()
    record = await session.get(IdempotencyRecord, (user_id, key))
    if record is None or record.expires_at <= datetime.now(UTC):
        return None
    if record.fingerprint != request_fingerprint:
        raise IdempotencyKeyReused()
    return StoredResponse(record.response_status, record.response_body)


async def store_response(
    session: AsyncSession,
    *,
    user_id: int,
    key: str,
    request_fingerprint: str,
    status: int,
    body: dict[str, Any],
    ttl: timedelta,
) -> None:
    """Record the outcome in the caller's transaction: it stands or falls with the work."""
    now = datetime.now(UTC)
    values = {
        "fingerprint": request_fingerprint,
        "response_status": status,
        "response_body": body,
        "created_at": now,
        "expires_at": now + ttl,
    }
    await session.execute(
        insert(IdempotencyRecord)
        .values(user_id=user_id, key=key, **values)
        .on_conflict_do_update(index_elements=["user_id", "key"], set_=values)
    )


async def purge_expired(session: AsyncSession, *, now: datetime | None = None) -> int:
    result = await session.execute(
        delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= (now or datetime.now(UTC)))
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$"),
]


async def run_idempotently(
    request: Request,
    session: AsyncSession,
    *,
    user_id: int,
    key: str | None,
    ttl: timedelta,
    status_code: int,
    work: Callable[[], Awaitable[BaseModel]],
) -> Response:
    """Do ``work`` once per (user, key) and replay its stored response for repeats."""
    if key is None:
        result = await work()
        return Response(result.model_dump_json(), status_code, media_type="application/json")
    request_fingerprint = fingerprint(request.method, request.url.path, await request.json())
    stored = await claim(session, user_id=user_id, key=key, request_fingerprint=request_fingerprint)
    if stored is not None:
        return JSONResponse(stored.body, stored.status, headers={"Idempotent-Replayed": "true"})
    body = (await work()).model_dump(mode="json")
    await store_response(
        session,
        user_id=user_id,
        key=key,
        request_fingerprint=request_fingerprint,
        status=status_code,
        body=body,
        ttl=ttl,
    )
    return JSONResponse(body, status_code)
