"""gunicorn for tripbook: uvicorn workers (uvloop, httptools), every knob from the environment.

Run: ``gunicorn -c deploy/gunicorn.conf.py``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from gunicorn.glogging import Logger


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


wsgi_app = "tripbook.main:create_app()"
worker_class = "uvicorn_worker.UvicornWorker"  # loop="auto", http="auto": uvloop + httptools
bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
workers = _int("GUNICORN_WORKERS", 2)
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 25)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
max_requests = _int("GUNICORN_MAX_REQUESTS", 10000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 1000)
backlog = _int("GUNICORN_BACKLOG", 2048)
# The app decides whom to trust for X-Forwarded-For (TRIPBOOK_TRUSTED_PROXIES), not uvicorn.
forwarded_allow_ips = ""
accesslog = None  # tripbook writes its own access line with the request id
proc_name = "tripbook-api"

# Prometheus multiprocess mode: every worker writes here and /metrics sums them.
_metrics_dir = os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", str(Path(tempfile.gettempdir()) / "tripbook-metrics")
)


class StructlogLogger(Logger):  # type: ignore[misc]
    """gunicorn's own lines through tripbook's structlog formatting."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        from tripbook.core.logging import configure_logging
        from tripbook.settings import get_settings

        configure_logging(get_settings())
        for logger in (self.error_log, self.access_log):
            logger.handlers = []
            logger.propagate = True


logger_class = StructlogLogger


def on_starting(server: Any) -> None:
    # Samples from a previous run would otherwise be summed into this one.
    shutil.rmtree(_metrics_dir, ignore_errors=True)
    Path(_metrics_dir).mkdir(parents=True, exist_ok=True)


def post_worker_init(worker: Any) -> None:
    # The app is loaded; what exists now lives as long as the worker (tripbook.core.gc_tuning).
    from tripbook.core.gc_tuning import tune_garbage_collector
    from tripbook.settings import get_settings

    tune_garbage_collector(get_settings().gc_gen0_threshold)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
