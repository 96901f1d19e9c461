"""Stored ``Idempotency-Key`` responses, changed behind the API's back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.factories import Account
from tripbook.core.db import unit_of_work
from tripbook.core.idempotency import IdempotencyRecord


async def expire(
    sessionmaker: async_sessionmaker[AsyncSession], account: Account, key: str
) -> None:
    """Move the stored response's expiry into the past, as if the TTL had run out."""
    async with unit_of_work(sessionmaker) as session:
        await session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.user_id == account.id, IdempotencyRecord.key == key)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
