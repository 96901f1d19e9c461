"""A real gunicorn running tripbook, for concurrency, shutdown and metrics tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests import environment
from tests.support.sandboxes import free_port, stop_process, wait_until_http_ok


def json_log_lines(text: str) -> list[dict[str, Any]]:
    """The JSON lines of a process's log (banners and the like are skipped)."""
    lines = []
    for raw in text.splitlines():
        if raw.startswith("{"):
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue  # a line still being written
    return lines


class GunicornError(RuntimeError):
    """gunicorn did not start, or its workers did not all come up."""


STARTED_LINE = "Application startup complete"
QUIET_BOOT_S = 3.0  # how long a worker that logs nothing gets to import its app


@dataclass
class Gunicorn:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> list[dict[str, Any]]:
        return json_log_lines(self.log())

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def wait_for_workers(self, workers: int, deadline: float) -> None:
        """``/healthz`` answers as soon as one worker is up; wait for ``workers`` of them.

        tripbook logs each worker's startup (after ``post_worker_init``); apps that configure
        no logging (the bench's references and naive baseline) say nothing, so for them
        every worker must have lived a while.
        """
        first_seen: dict[int, float] = {}
        while True:
            now = time.monotonic()
            if self.log().count(STARTED_LINE) >= workers:
                return
            pids = self.worker_pids()
            for pid in pids:
                first_seen.setdefault(pid, now)
            if sum(now - first_seen[pid] >= QUIET_BOOT_S for pid in pids) >= workers:
                return
            if self.process.poll() is not None or now > deadline:
                raise GunicornError(f"workers did not start:\n{self.log()[-3000:]}")
            time.sleep(0.1)  # poll interval


@contextmanager
def gunicorn_process(
    log_path: Path,
    port: int,
    env: dict[str, str],
    *,
    workers: int,
    app: str | None = None,
    startup_timeout_s: float = 30.0,
    stop_timeout_s: float = 30.0,
) -> Iterator[Gunicorn]:
    """gunicorn with ``deploy/gunicorn.conf.py`` on 127.0.0.1:``port`` serving ``app``
    (None: the config's tripbook app), once all its ``workers`` are up; SIGTERM at the end."""
    command = [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py"]
    command += ["--bind", f"127.0.0.1:{port}", *([app] if app else [])]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=environment.ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    server = Gunicorn(process=process, url=f"http://127.0.0.1:{port}", log_path=log_path)
    deadline = time.monotonic() + startup_timeout_s
    try:
        try:
            wait_until_http_ok(f"{server.url}/healthz", startup_timeout_s, process=process)
        except Exception as exc:
            raise GunicornError(f"gunicorn did not start:\n{server.log()[-3000:]}") from exc
        server.wait_for_workers(workers, deadline)
        yield server
    finally:
        stop_process(process, stop_timeout_s)


@contextmanager
def run_gunicorn(
    log_dir: Path,
    *,
    workers: int = 2,
    env: dict[str, str] | None = None,
    stop_timeout_s: float = 30.0,
) -> Iterator[Gunicorn]:
    """tripbook under gunicorn in the test world (tests/environment.py), ``env`` on top."""
    port = free_port()
    process_env = {
        **os.environ,
        **environment.ENVIRONMENT,
        "GUNICORN_WORKERS": str(workers),
        "PROMETHEUS_MULTIPROC_DIR": str(log_dir / f"metrics-{port}"),
        **(env or {}),
    }
    with gunicorn_process(
        log_dir / f"gunicorn-{port}.log",
        port,
        process_env,
        workers=workers,
        stop_timeout_s=stop_timeout_s,
    ) as server:
        yield server
