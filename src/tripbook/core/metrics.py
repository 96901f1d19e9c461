"""Prometheus metrics that add up across gunicorn workers (multiprocess mode).

``PROMETHEUS_MULTIPROC_DIR`` must be set before this module is imported in a multi-worker
server; ``deploy/gunicorn.conf.py`` does that and cleans the directory on start.
"""

from __future__ import annotations

import functools
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

HTTP_REQUESTS = Counter(
    "tripbook_http_requests_total",
    "HTTP requests by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "tripbook_http_request_duration_seconds",
    "HTTP request latency by method and route template.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RESERVATIONS = Counter(
    "tripbook_reservations_total",
    "Reservation lifecycle events (held, confirmed, expired, cancelled, refused, ...).",
    ["event"],
)
OUTBOX_BACKLOG = Gauge(
    "tripbook_outbox_backlog",
    "Outbox events not yet published, as last seen by the relay sweep.",
    multiprocess_mode="mostrecent",
)
PAYMENTS = Counter(
    "tripbook_payments_total",
    "Charges and refunds reaching a final status (succeeded, failed, refund_failed).",
    ["kind", "status"],
)
GATEWAY_MISCONFIGURED = Counter(
    "tripbook_payment_gateway_misconfigured_total",
    "Gateway answers that mean our configuration is wrong (401, 403, 404, 422, ...).",
)
OUTBOX_REDELIVERED = Counter(
    "tripbook_outbox_redelivered_total",
    "Outbox events published again because no consumer recorded them as processed.",
)
DEPENDENCY_UP = Gauge(
    "tripbook_dependency_up",
    "Whether the last readiness check reached the dependency (1) or not (0).",
    ["dependency"],
    multiprocess_mode="mostrecent",
)
TASKS = Counter(
    "tripbook_tasks_total",
    "Celery task outcomes by task name (success, failure, retry).",
    ["task", "outcome"],
)
TASK_DURATION = Histogram(
    "tripbook_task_duration_seconds",
    "Celery task run time by task name.",
    ["task"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)


@functools.lru_cache(maxsize=1024)  # bounded: methods are httptools' list, routes templates
def _request_series(method: str, route: str, status: int) -> tuple[Counter, Histogram]:
    return HTTP_REQUESTS.labels(method, route, str(status)), HTTP_LATENCY.labels(method, route)


def record_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one request and observe its latency; the labelled series are looked up once."""
    requests, latency = _request_series(method, route, status)
    requests.inc()
    latency.observe(seconds)


def render_latest() -> tuple[bytes, str]:
    """The exposition for /metrics: every process's samples when in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    from prometheus_client import REGISTRY

    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
