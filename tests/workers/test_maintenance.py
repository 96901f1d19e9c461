"""Beat's jobs, run by a real worker: hold expiry and the idempotency-key purge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from celery import Celery

from tests.support.booking import Booking, expire_now
from tests.support.factories import Account
from tests.support.sandboxes import SmtpSink
from tests.support.workers import CeleryProcess, eventually, run_beat, wait_for_messages
from tripbook.core.db import unit_of_work
from tripbook.core.idempotency import IdempotencyRecord

pytestmark = pytest.mark.slow


async def test_expired_holds_are_released_by_the_scheduled_job(
    worker: CeleryProcess,
    booking: Booking,
    smtp_sink: SmtpSink,
    jobs_log_dir: Path,
    worker_env: dict[str, str],
) -> None:
    account, departure = await booking.customer_and_departure(seats=6)
    held = await booking.hold(account, departure.id, seats=2)
    paying = await booking.hold(account, departure.id, seats=3)
    await booking.pay(account, paying["id"], "tok_slow_1")
    await booking.wait_for_status(paying["id"], "confirmed")
    await expire_now(booking, held["id"])
    assert await booking.factories.seats_available(departure.id) == 1

    # Beat itself, ticking fast, sends the job; the API plays no part.
    with run_beat(jobs_log_dir, env={**worker_env, "TRIPBOOK_HOLD_EXPIRY_INTERVAL_S": "0.5"}):
        await booking.wait_for_status(held["id"], "expired")

    assert await booking.factories.seats_available(departure.id) == 3
    assert (await booking.reservation(paying["id"])).status == "confirmed"
    messages = await wait_for_messages(smtp_sink, to=account.email, count=4)
    assert f"Hold expired: reservation {held['id']}" in [m["subject"] for m in messages]


async def test_expire_holds_sent_by_name(
    worker: CeleryProcess, booking: Booking, broker: Celery
) -> None:
    account, departure = await booking.customer_and_departure(seats=2)
    held = await booking.hold(account, departure.id, seats=2)
    await expire_now(booking, held["id"])

    broker.send_task("maintenance.expire_holds", queue="maintenance")

    await booking.wait_for_status(held["id"], "expired")
    assert await booking.factories.seats_available(departure.id) == 2


async def test_expired_idempotency_keys_are_purged(
    worker: CeleryProcess, booking: Booking, broker: Celery
) -> None:
    account: Account = await booking.factories.account()
    now = datetime.now(UTC)
    async with unit_of_work(booking.sessionmaker) as session:
        for key, expires_at in (
            ("old", now - timedelta(hours=1)),
            ("new", now + timedelta(hours=1)),
        ):
            session.add(
                IdempotencyRecord(
                    user_id=account.id,
                    key=key,
                    fingerprint="f" * 64,
                    response_status=201,
                    response_body={},
                    expires_at=expires_at,
                )
            )

    broker.send_task("maintenance.purge_idempotency_keys", queue="maintenance")

    async def purged() -> bool:
        async with booking.sessionmaker() as session:
            old = await session.get(IdempotencyRecord, (account.id, "old"))
            return old is None

    await eventually(purged, what="the expired key to be purged")
    async with booking.sessionmaker() as session:
        assert await session.get(IdempotencyRecord, (account.id, "new")) is not None
