"""gunicorn with ``deploy/gunicorn.conf.py`` on 127.0.0.1, one per scenario."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.bench import config
from tests.support.sandboxes import free_port
from tests.support.servers import Gunicorn, gunicorn_process

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


@contextmanager
def run_server(
    app: str | None, env: dict[str, str], log_dir: Path, name: str
) -> Iterator[Gunicorn]:
    """Start gunicorn serving ``app`` (None: the config's tripbook app) until the block ends."""
    port = free_port()
    with gunicorn_process(
        log_dir / f"{name}-{port}.log",
        port,
        env,
        workers=config.WORKERS,
        app=app,
        startup_timeout_s=STARTUP_TIMEOUT_S,
        stop_timeout_s=STOP_TIMEOUT_S,
    ) as server:
        yield server
