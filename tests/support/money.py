"""Checks every money test ends with: the ledger against the gateway's own records, and
exactly the emails a reservation's final state calls for, counted once all are sent."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.sandboxes import PaymentSandbox, SmtpSink
from tests.support.workers import eventually
from tripbook.core.outbox import OutboxEvent, ProcessedEvent
from tripbook.notifications.rendering import SUBJECTS
from tripbook.payments import ledger
from tripbook.payments.gateway import HttpPaymentGateway


async def ledger_mismatches(
    sessionmaker: async_sessionmaker[AsyncSession],
    sandbox: PaymentSandbox,
    reservation_ids: list[str],
) -> list[str]:
    """What ``tripbook reconcile --report`` would print for these reservations."""
    async with (
        httpx.AsyncClient(base_url=sandbox.url, timeout=5.0) as client,
        sessionmaker() as session,
    ):
        return await ledger.report(
            session,
            HttpPaymentGateway(client),
            reservation_ids=[uuid.UUID(r) for r in reservation_ids],
        )


async def emails_sent(
    sessionmaker: async_sessionmaker[AsyncSession],
    sink: SmtpSink,
    *,
    to: str,
    reservation_id: str,
    timeout_s: float = 30.0,
    once_per_message_id: bool = False,
) -> list[str]:
    """The subjects the sink received for ``to``, once every email event of the reservation
    has been processed: none still to come, so a duplicate would show.

    ``once_per_message_id``: for tests that SIGKILL a worker. A worker killed between the
    SMTP server's "250" and its commit sends that email again on redelivery, by design with
    the same Message-ID (mail clients show it once): such resends count once, after
    checking they are the same message."""

    async def all_processed() -> bool:
        async with sessionmaker() as session:
            pending = await session.scalar(
                select(func.count())
                .select_from(OutboxEvent)
                .outerjoin(ProcessedEvent, ProcessedEvent.event_id == OutboxEvent.id)
                .where(
                    OutboxEvent.task == "email.send",
                    OutboxEvent.payload["reservation_id"].astext == reservation_id,
                    ProcessedEvent.event_id.is_(None),
                )
            )
        return pending == 0

    await eventually(all_processed, timeout_s=timeout_s, what="every email to be sent")
    messages: list[dict[str, Any]] = sink.messages(to=to)
    if not once_per_message_id:
        return sorted(message["subject"] for message in messages)
    by_id: dict[str, dict[str, Any]] = {}
    for message in messages:
        first = by_id.setdefault(message["message_id"], message)
        # A resend is the same message: same Message-ID, same subject and body.
        assert (message["subject"], message["text"]) == (first["subject"], first["text"])
    return sorted(message["subject"] for message in by_id.values())


def subjects(reservation_id: str, *templates: str) -> list[str]:
    """The subjects of these templates' emails about the reservation, sorted."""
    return sorted(
        SUBJECTS[template].format(reservation_id=reservation_id) for template in templates
    )
