"""A real gunicorn running tripbook, for concurrency, shutdown and metrics tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests import environment
from tests.support.sandboxes import free_port, wait_until_http_ok


@dataclass
class Gunicorn:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def run_gunicorn(
    log_dir: Path,
    *,
    workers: int = 2,
    env: dict[str, str] | None = None,
    stop_timeout_s: float = 30.0,
) -> Iterator[Gunicorn]:
    port = free_port()
    log_path = log_dir / f"gunicorn-{port}.log"
    process_env = {
        **os.environ,
        **environment.ENVIRONMENT,
        "GUNICORN_WORKERS": str(workers),
        "PROMETHEUS_MULTIPROC_DIR": str(log_dir / f"metrics-{port}"),
        **(env or {}),
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "deploy/gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{port}",
            ],
            cwd=environment.ROOT,
            env=process_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Gunicorn(process=process, url=f"http://127.0.0.1:{port}", log_path=log_path)
    try:
        try:
            wait_until_http_ok(f"{server.url}/healthz", timeout_s=30)
        except Exception as exc:
            raise RuntimeError(f"gunicorn did not start:\n{server.log()[-3000:]}") from exc
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=stop_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
