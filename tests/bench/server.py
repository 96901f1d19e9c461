"""gunicorn with ``deploy/gunicorn.conf.py`` on 127.0.0.1, one per scenario."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.bench import config
from tests.support.sandboxes import free_port
from tests.support.servers import Gunicorn, GunicornError, gunicorn_process

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
STARTED_LINE = "Application startup complete"
QUIET_BOOT_S = 3.0  # how long a worker that logs nothing gets to import its app


def _wait_for_workers(server: Gunicorn, deadline: float) -> None:
    """``/healthz`` answers as soon as one worker is up; wait for every one of them.

    tripbook logs each worker's startup; apps that configure no logging (the references,
    the naive baseline) say nothing, so for them every worker must have lived a while.
    """
    first_seen: dict[int, float] = {}
    while True:
        now = time.monotonic()
        if server.log().count(STARTED_LINE) >= config.WORKERS:
            return
        pids = server.worker_pids()
        for pid in pids:
            first_seen.setdefault(pid, now)
        alive = [pid for pid in pids if now - first_seen[pid] >= QUIET_BOOT_S]
        if len(alive) >= config.WORKERS:
            return
        if server.process.poll() is not None or now > deadline:
            raise GunicornError(f"workers did not start:\n{server.log()[-3000:]}")
        time.sleep(0.1)  # poll interval


@contextmanager
def run_server(
    app: str | None, env: dict[str, str], log_dir: Path, name: str
) -> Iterator[Gunicorn]:
    """Start gunicorn serving ``app`` (None: the config's tripbook app) until the block ends."""
    port = free_port()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with gunicorn_process(
        log_dir / f"{name}-{port}.log",
        port,
        env,
        app=app,
        startup_timeout_s=STARTUP_TIMEOUT_S,
        stop_timeout_s=STOP_TIMEOUT_S,
    ) as server:
        _wait_for_workers(server, deadline)
        yield server
