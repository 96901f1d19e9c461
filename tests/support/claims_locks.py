"""Who waits on whom in PostgreSQL: to hold a transaction open at a chosen point and know
for certain that another one is blocked behind it, instead of hoping the timing lines up."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


async def backend_pid(session: AsyncSession) -> int:
    """The PostgreSQL backend serving ``session`` (which it then keeps until it ends)."""
    pid: int = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    return pid


async def backend_blocked_by(
    sessionmaker: async_sessionmaker[AsyncSession], blocker_pid: int
) -> int | None:
    """The PostgreSQL backend waiting for a lock that ``blocker_pid`` holds, if any."""
    async with sessionmaker() as session:
        result = await session.execute(
            text("SELECT pid FROM pg_stat_activity WHERE :blocker = ANY(pg_blocking_pids(pid))"),
            {"blocker": blocker_pid},
        )
        pid: int | None = result.scalar_one_or_none()
        return pid
