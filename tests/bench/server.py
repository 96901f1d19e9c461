"""gunicorn with ``deploy/gunicorn.conf.py`` on 127.0.0.1, one per scenario."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.bench import config
from tests.support.sandboxes import free_port, wait_until_http_ok

STARTUP_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
STARTED_LINE = "Application startup complete"
QUIET_BOOT_S = 3.0  # how long a worker that logs nothing gets to import its app


class ServerError(RuntimeError):
    """gunicorn did not start, or its workers did not all come up."""


@dataclass(frozen=True, slots=True)
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []


def _wait_for_workers(server: Server, deadline: float) -> None:
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
            raise ServerError(f"workers did not start:\n{server.log()[-3000:]}")
        time.sleep(0.1)  # poll interval


@contextmanager
def run_server(app: str | None, env: dict[str, str], log_dir: Path, name: str) -> Iterator[Server]:
    """Start gunicorn serving ``app`` (None: the config's tripbook app) until the block ends."""
    port = free_port()
    log_path = log_dir / f"{name}-{port}.log"
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "deploy/gunicorn.conf.py",
        "--bind",
        f"127.0.0.1:{port}",
        *([app] if app else []),
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=config.ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Server(process=process, url=f"http://127.0.0.1:{port}", log_path=log_path)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        try:
            wait_until_http_ok(f"{server.url}/healthz", STARTUP_TIMEOUT_S, process=process)
        except Exception as exc:
            raise ServerError(f"gunicorn did not start:\n{server.log()[-3000:]}") from exc
        _wait_for_workers(server, deadline)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
