"""``email.send``: one reservation email per outbox event, retried while SMTP is down."""

from __future__ import annotations

import smtplib
import uuid
from typing import Any

from celery import Task

from tripbook.core.db import unit_of_work
from tripbook.notifications.service import send_reservation_email
from workers import runtime
from workers.app import app, settings
from workers.events import is_unknown_event
from workers.retry import is_retryable, run_or_retry


@app.task(name="email.send", bind=True, max_retries=settings.email_max_retries)
def send(self: Task[Any, Any], event_id: str, payload: dict[str, Any]) -> bool:
    if is_unknown_event(self, event_id):
        return False
    return run_or_retry(
        self,
        send_email(
            event_id=uuid.UUID(event_id),
            template=payload["template"],
            reservation_id=uuid.UUID(payload["reservation_id"]),
        ),
        retryable=lambda exc: isinstance(exc, smtplib.SMTPException) or is_retryable(exc),
    )


async def send_email(*, event_id: uuid.UUID, template: str, reservation_id: uuid.UUID) -> bool:
    rt = runtime.current()
    async with unit_of_work(rt.sessionmaker) as session:
        return await send_reservation_email(
            session,
            settings=rt.settings,
            event_id=event_id,
            template=template,
            reservation_id=reservation_id,
        )
