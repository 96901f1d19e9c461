"""Celery signal handlers: logging, the request id, metrics and the per-process runtime.

- ``setup_logging``: tripbook's structlog configuration, so Celery never takes over the
  root logger; every line is JSON (in production) like the API's.
- ``task_prerun``/``task_postrun``: bind ``request_id`` (from the message header the relay
  sets; a fresh one for beat's tasks), ``task_name`` and ``task_id`` into every log line
  of the task and into ``asgi_correlation_id`` (read by ``core.logging``), time the task.
- ``task_success``/``task_failure``/``task_retry``: ``tripbook_tasks_total``.
- ``worker_process_init``/``worker_process_shutdown``: one runtime per prefork child.
- ``worker_ready``/``worker_shutdown``: the main process serves ``/metrics`` for all its
  children when ``PROMETHEUS_MULTIPROC_DIR`` and ``TRIPBOOK_WORKER_METRICS_PORT`` are set.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

import structlog
from asgi_correlation_id import correlation_id
from celery import Task, signals
from prometheus_client import CollectorRegistry, multiprocess, start_http_server

from tripbook.core.logging import configure_logging, get_logger
from tripbook.core.metrics import TASK_DURATION, TASKS
from tripbook.core.relay import REQUEST_ID_HEADER
from tripbook.settings import get_settings
from workers import runtime

log = get_logger("workers")

_started: dict[str, float] = {}
_metrics_server: Any = None


@signals.setup_logging.connect
def on_setup_logging(**_: Any) -> None:
    configure_logging(get_settings())


@signals.worker_process_init.connect
def on_process_init(**_: Any) -> None:
    runtime.start()


@signals.worker_process_shutdown.connect
def on_process_shutdown(**_: Any) -> None:
    runtime.stop()


@signals.task_prerun.connect
def on_task_prerun(task_id: str, task: Task[Any, Any], **_: Any) -> None:
    request_id = task.request.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
    correlation_id.set(request_id)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        request_id=request_id, task_name=task.name, task_id=task_id
    )
    _started[task_id] = time.perf_counter()
    log.info("task_started", retries=task.request.retries)


@signals.task_postrun.connect
def on_task_postrun(task_id: str, task: Task[Any, Any], state: str | None = None, **_: Any) -> None:
    started = _started.pop(task_id, None)
    if started is not None:
        elapsed = time.perf_counter() - started
        TASK_DURATION.labels(task.name).observe(elapsed)
        log.info("task_finished", state=state, duration_ms=round(elapsed * 1000, 2))
    structlog.contextvars.clear_contextvars()
    correlation_id.set(None)


@signals.task_success.connect
def on_task_success(sender: Task[Any, Any], **_: Any) -> None:
    TASKS.labels(sender.name, "success").inc()


@signals.task_failure.connect
def on_task_failure(sender: Task[Any, Any], **_: Any) -> None:
    TASKS.labels(sender.name, "failure").inc()


@signals.task_retry.connect
def on_task_retry(sender: Task[Any, Any], reason: Any = None, **_: Any) -> None:
    TASKS.labels(sender.name, "retry").inc()
    log.info("task_retry", reason=str(reason))


@signals.worker_ready.connect
def on_worker_ready(sender: Any, **_: Any) -> None:
    global _metrics_server
    port = get_settings().worker_metrics_port
    if port and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        _metrics_server, _thread = start_http_server(port, registry=registry)
        log.info("worker_metrics_listening", port=port)
    log.info("worker_ready", hostname=getattr(sender, "hostname", None))


@signals.worker_shutdown.connect
def on_worker_shutdown(**_: Any) -> None:
    global _metrics_server
    if _metrics_server is not None:
        _metrics_server.shutdown()
        _metrics_server.server_close()
        _metrics_server = None
