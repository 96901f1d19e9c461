"""A message whose outbox event this database never wrote (a stale backlog, a broker
shared by mistake) is acknowledged with one warning line naming the event, never a
traceback per delivery."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

import pytest
from celery import Celery

from tests.support.workers import CeleryProcess, eventually, finished

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(
    ("task", "payload"),
    [
        ("email.send", {"template": "reservation_held", "reservation_id": str(uuid.uuid4())}),
        ("payments.settle", {"payment_id": str(uuid.uuid4())}),
        ("payments.refund", {"refund_id": str(uuid.uuid4())}),
    ],
)
async def test_an_unknown_event_is_one_warning(
    worker: CeleryProcess, broker: Celery, task: str, payload: dict[str, Any]
) -> None:
    event_id = str(uuid.uuid4())
    queue = task.partition(".")[0]
    broker.send_task(
        task, kwargs={"event_id": event_id, "payload": payload}, task_id=event_id, queue=queue
    )

    await eventually(partial(finished, [worker], event_id), what=f"{task} to run")

    mine = [line for line in worker.log_lines() if line.get("task_id") == event_id]
    warnings = [line for line in mine if line.get("event") == "unknown_event"]
    assert [(w["level"], w["event_id"], w["task"]) for w in warnings] == [
        ("warning", event_id, task)
    ]
    assert [line for line in mine if line.get("level") in ("error", "critical")] == []
    assert not any("exception" in line or "exc_info" in line for line in mine)
    [done] = [line for line in mine if line.get("event") == "task_finished"]
    assert done["state"] == "SUCCESS"  # acknowledged, not retried or failed
