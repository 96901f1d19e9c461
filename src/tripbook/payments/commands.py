"""``tripbook reconcile``: one reconciliation pass, or the ledger report, from the shell."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tripbook.core.db import create_engine, create_sessionmaker
from tripbook.core.redis import create_redis
from tripbook.payments import ledger
from tripbook.payments.gateway import HttpPaymentGateway
from tripbook.payments.reconciliation import Payments, ReconcileReport, reconcile
from tripbook.settings import Settings
from tripbook.trips import cache


@asynccontextmanager
async def payments_of(settings: Settings) -> AsyncIterator[Payments]:
    engine = create_engine(settings, pool_size=2, max_overflow=0)
    try:
        async with HttpPaymentGateway.create_client(settings) as client:
            yield Payments(create_sessionmaker(engine), HttpPaymentGateway(client), settings)
    finally:
        await engine.dispose()


async def reconcile_once(settings: Settings) -> ReconcileReport:
    redis = create_redis(settings)
    try:
        async with payments_of(settings) as payments:

            async def invalidate(trip_id: int) -> None:
                await cache.invalidate(redis, settings, trip_id)

            return await reconcile(payments, request_id=None, on_seats_changed=invalidate)
    finally:
        await redis.aclose()


async def ledger_report(settings: Settings, reservation_ids: list[uuid.UUID] | None) -> list[str]:
    async with payments_of(settings) as payments, payments.sessionmaker() as session:
        return await ledger.report(session, payments.gateway, reservation_ids=reservation_ids)
