"""Beat's periodic jobs: expire holds, sweep and redeliver the outbox, purge idempotency keys.

Each is safe to run on several workers at once: expiry and the sweep take their rows
with ``FOR UPDATE SKIP LOCKED``, and the purge deletes only what has expired.
"""

from __future__ import annotations

from datetime import timedelta
from functools import partial

from tripbook.core.db import after_commit, unit_of_work
from tripbook.core.idempotency import purge_expired
from tripbook.core.logging import get_logger
from tripbook.reservations.service import expire_due_holds
from tripbook.trips import cache
from workers import runtime
from workers.app import app

log = get_logger(__name__)

# A sweep run publishes at most this many batches; the next tick takes the rest.
MAX_SWEEP_BATCHES = 10


@app.task(name="maintenance.expire_holds")
def expire_holds() -> int:
    return runtime.run(release_expired_holds())


async def release_expired_holds() -> int:
    rt = runtime.current()
    async with unit_of_work(rt.sessionmaker) as session:
        released = await expire_due_holds(session)
        for item in released:
            after_commit(session, partial(cache.invalidate, rt.redis, rt.settings, item.trip_id))
    if released:
        log.info("holds_expired", trips=len(released))
    return len(released)


@app.task(name="maintenance.sweep_outbox")
def sweep_outbox() -> int:
    return runtime.run(publish_leftovers())


async def publish_leftovers() -> int:
    rt = runtime.current()
    published = 0
    for _ in range(MAX_SWEEP_BATCHES):
        result = await rt.relay.sweep(
            older_than=timedelta(seconds=rt.settings.outbox_sweep_grace_s),
            batch=rt.settings.outbox_sweep_batch,
        )
        published += result.published
        if result.failed or result.published < rt.settings.outbox_sweep_batch:
            break
    if published:
        log.info("outbox_swept", published=published, backlog=result.backlog)
    return published + await rt.relay.redeliver(
        older_than=timedelta(seconds=rt.settings.outbox_redeliver_after_s),
        batch=rt.settings.outbox_sweep_batch,
        max_deliveries=rt.settings.outbox_max_deliveries,
    )


@app.task(name="maintenance.purge_idempotency_keys")
def purge_idempotency_keys() -> int:
    return runtime.run(purge())


async def purge() -> int:
    async with unit_of_work(runtime.current().sessionmaker) as session:
        purged = await purge_expired(session)
    log.info("idempotency_keys_purged", purged=purged)
    return purged
