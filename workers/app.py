"""The Celery app: Redis broker, reliability settings, queues and the beat schedule.

Reliability (DESIGN §6): a task is acknowledged only once it has run (``acks_late``),
requeued if its process dies (``reject_on_worker_lost``), prefetched one at a time, and
redelivered by Redis only after a visibility timeout longer than any countdown. Every
task is idempotent, keyed by its outbox event id, so a redelivery changes nothing twice.

    celery -A workers.app worker -Q payments,email,maintenance,celery
    celery -A workers.app beat
"""

from __future__ import annotations

from celery import Celery

from tripbook.core.relay import QUEUES, broker_transport_options
from tripbook.settings import get_settings
from workers import signals  # noqa: F401 - connects logging, request id and metrics hooks
from workers.beat import beat_schedule

settings = get_settings()

app = Celery(
    "tripbook",
    broker=settings.broker_url,
    include=["workers.tasks.payments", "workers.tasks.email", "workers.tasks.maintenance"],
)
app.conf.update(
    broker_transport_options={
        **broker_transport_options(settings),
        # Look for a dead worker's unacknowledged messages this often (no extra throttle).
        "unacked_restore_interval": settings.broker_restore_interval_s,
        "unacked_restore_throttle": 1,
    },
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    result_serializer="json",
    event_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_cancel_long_running_tasks_on_connection_loss=True,
    task_soft_time_limit=settings.task_soft_time_limit_s,
    task_time_limit=settings.task_time_limit_s,
    task_routes={f"{queue}.*": {"queue": queue} for queue in QUEUES},
    worker_hijack_root_logger=False,
    worker_redirect_stdouts=False,
    beat_schedule=beat_schedule(settings),
    timezone="UTC",
    enable_utc=True,
)
