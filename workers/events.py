"""Messages whose outbox event this database never wrote: a stale backlog, a broker shared
by mistake. They are acknowledged with one warning line, never a traceback per delivery
(a stale backlog once wrote a gigabyte of tracebacks in minutes)."""

from __future__ import annotations

import uuid
from typing import Any

from celery import Task

from tripbook.core.logging import get_logger
from tripbook.core.outbox import event_exists
from workers import runtime

log = get_logger(__name__)


def is_unknown_event(task: Task[Any, Any], event_id: str) -> bool:
    """True (and one warning logged) when the message's event is not in this database."""

    async def exists() -> bool:
        async with runtime.current().sessionmaker() as session:
            return await event_exists(session, uuid.UUID(event_id))

    if runtime.run(exists()):
        return False
    log.warning("unknown_event", event_id=event_id, task=task.name)
    return True
