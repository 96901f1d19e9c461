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
from sqlalchemy import BigInteger, ForeignKey, Index, SmallInteger, String, delete, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
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
    response_status: Mapped[int | None] = mapped_column(SmallInteger)
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
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


# A claim older than this belongs to a request that died (the statement timeout is far
# shorter), so another request may take it over.
ABANDONED_AFTER = timedelta(seconds=60)


def fingerprint(method: str, path: str, body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method} {path}\n{canonical}".encode()).hexdigest()


async def claim(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    user_id: int,
    key: str,
    request_fingerprint: str,
    ttl: timedelta,
) -> StoredResponse | None:
    """Claim the key for this request in its own committed transaction.

    Returns None when the caller owns the key and should do the work, the stored response
    when it was done before; raises when the key is busy or was used for another request.
    """
    now = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        claimed = await session.execute(
            insert(IdempotencyRecord)
            .values(
                user_id=user_id,
                key=key,
                fingerprint=request_fingerprint,
                expires_at=now + ttl,
                created_at=now,
            )
            .on_conflict_do_update(
                index_elements=["user_id", "key"],
                set_={
                    "fingerprint": request_fingerprint,
                    "created_at": now,
                    "expires_at": now + ttl,
                },
                # Take over only an expired record or an abandoned claim.
                where=(IdempotencyRecord.expires_at <= now)
                | (
                    IdempotencyRecord.response_status.is_(None)
                    & (IdempotencyRecord.created_at < now - ABANDONED_AFTER)
                ),
            )
            .returning(IdempotencyRecord.key)
        )
        if claimed.first() is not None:
            return None
        record = await session.get(IdempotencyRecord, (user_id, key))
    if record is None:  # deleted between the two statements: treat as busy
        raise IdempotentRequestInProgress()
    if record.fingerprint != request_fingerprint:
        raise IdempotencyKeyReused()
    if record.response_status is None or record.response_body is None:
        raise IdempotentRequestInProgress()
    return StoredResponse(record.response_status, record.response_body)


async def store_response(
    session: AsyncSession, *, user_id: int, key: str, status: int, body: dict[str, Any]
) -> None:
    """Record the outcome in the caller's transaction: it stands or falls with the work."""
    await session.execute(
        update(IdempotencyRecord)
        .where(IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key)
        .values(response_status=status, response_body=body)
    )


async def release(
    sessionmaker: async_sessionmaker[AsyncSession], *, user_id: int, key: str
) -> None:
    """Forget a claim whose request failed, so that a retry can do the work."""
    async with sessionmaker() as session, session.begin():
        await session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.user_id == user_id,
                IdempotencyRecord.key == key,
                IdempotencyRecord.response_status.is_(None),
            )
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
    """Do ``work`` once per (user, key); replay its stored response for repeats.

    A request that fails (domain error or crash) releases its claim: nothing was done,
    so a retry with the same key may do the work.
    """
    if key is None:
        result = await work()
        return Response(result.model_dump_json(), status_code, media_type="application/json")
    sessionmaker = request.app.state.sessionmaker
    stored = await claim(
        sessionmaker,
        user_id=user_id,
        key=key,
        request_fingerprint=fingerprint(request.method, request.url.path, await request.json()),
        ttl=ttl,
    )
    if stored is not None:
        return JSONResponse(stored.body, stored.status, headers={"Idempotent-Replayed": "true"})
    try:
        result = await work()
        body = result.model_dump(mode="json")
        await store_response(session, user_id=user_id, key=key, status=status_code, body=body)
    except BaseException:
        await release(sessionmaker, user_id=user_id, key=key)
        raise
    return JSONResponse(body, status_code)
