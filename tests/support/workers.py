"""Real Celery processes for the tests: ``celery -A workers.app worker`` and ``beat``.

They run with the test environment (``tests/environment.py``: the run's own database and
Redis key prefix) plus the caller's extras (sandbox URLs, short backoffs), log JSON lines
to a file, and are waited for by watching that log, with a deadline, never by sleeping.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis import Redis as SyncRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests import environment
from tests.support.sandboxes import SmtpSink
from tests.support.servers import json_log_lines

QUEUES = "payments,email,maintenance,celery"
LOG_TAIL_CHARS = 4000


class CeleryProcessError(RuntimeError):
    """A worker or beat did not start, or died while in use."""


@dataclass
class CeleryProcess:
    popen: subprocess.Popen[bytes]
    log_path: Path
    name: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self) -> str:
        return self.log()[-LOG_TAIL_CHARS:]

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON lines logged so far (Celery's banner and the like are skipped)."""
        return json_log_lines(self.log())

    def wait_for_line(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 20.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            for line in self.log_lines():
                if predicate(line):
                    return line
            if self.popen.poll() is not None:
                raise CeleryProcessError(
                    f"{self.name} exited with code {self.popen.returncode}:\n{self.log_tail()}"
                )
            if time.monotonic() >= deadline:
                raise CeleryProcessError(
                    f"{self.name}: no matching log line within {timeout_s}s:\n{self.log_tail()}"
                )
            time.sleep(0.05)  # poll interval

    def kill(self) -> None:
        """SIGKILL the whole process group (the main process and its pool children)."""
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)  # warm shutdown: running tasks finish
            with suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout_s)
        self.kill()  # whatever is left of the group


def process_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, **environment.ENVIRONMENT, "PYTHONUNBUFFERED": "1", **(extra or {})}


@contextmanager
def _run(
    name: str, args: list[str], log_path: Path, env: dict[str, str] | None
) -> Iterator[CeleryProcess]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
        popen = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers.app", *args],
            cwd=environment.ROOT,
            env=process_env(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so kill() reaches the pool
        )
    process = CeleryProcess(popen=popen, log_path=log_path, name=name)
    try:
        yield process
    finally:
        process.stop()


@contextmanager
def run_worker(
    log_dir: Path,
    *,
    env: dict[str, str] | None = None,
    name: str = "worker",
    ready_timeout_s: float = 30.0,
) -> Iterator[CeleryProcess]:
    """A prefork worker with one child on every queue; yields once it is consuming."""
    node = f"{name}-{uuid.uuid4().hex[:8]}"
    args = [
        "worker",
        "--pool",
        "prefork",
        "--concurrency",
        "1",
        "--queues",
        QUEUES,
        "--hostname",
        f"{node}@%h",
        # No chatter with other workers: each test run has its own key space anyway.
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        "INFO",
    ]
    with _run(node, args, log_dir / f"{node}.log", env) as worker:
        worker.wait_for_line(lambda line: line.get("event") == "worker_ready", ready_timeout_s)
        yield worker


@contextmanager
def run_beat(log_dir: Path, *, env: dict[str, str] | None = None) -> Iterator[CeleryProcess]:
    """Beat with its schedule file in ``log_dir``; yields once it has started."""
    node = f"beat-{uuid.uuid4().hex[:8]}"
    args = ["beat", "--loglevel", "INFO", "--schedule", str(log_dir / f"{node}-schedule")]
    with _run(node, args, log_dir / f"{node}.log", env) as beat:
        beat.wait_for_line(lambda line: "beat: Starting" in str(line.get("event")), 30.0)
        yield beat


def finished(workers: list[CeleryProcess], task_id: uuid.UUID | str, *, at_least: int = 1) -> bool:
    """Whether the workers have finished running ``at_least`` deliveries of ``task_id``
    (the relay sends each outbox event with its event id as the task id)."""
    runs = sum(
        1
        for worker in workers
        for line in worker.log_lines()
        if line.get("event") == "task_finished" and line.get("task_id") == str(task_id)
    )
    return runs >= at_least


def broker_backlog() -> int:
    """Messages in the test broker not yet done: queued, or delivered and unacknowledged
    (running, or held by a worker until a retry's countdown is over)."""
    prefix = environment.KEY_PREFIX
    with SyncRedis.from_url(environment.BROKER_URL) as redis:
        queued = sum(int(redis.llen(f"{prefix}{queue}")) for queue in QUEUES.split(","))
        return queued + int(redis.hlen(f"{prefix}unacked"))


async def eventually(
    check: Callable[[], Any], *, timeout_s: float = 20.0, what: str = "condition"
) -> Any:
    """Poll ``check`` (sync or async) until it returns something but None or False."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout_s}s")
        await asyncio.sleep(0.1)  # poll interval


async def wait_for_messages(
    sink: SmtpSink,
    *,
    to: str,
    count: int,
    timeout_s: float = 20.0,
    exact_for: tuple[async_sessionmaker[AsyncSession], str] | None = None,
) -> list[dict[str, Any]]:
    """The sink's messages to ``to``, once there are at least ``count`` of them.

    ``exact_for=(sessionmaker, reservation_id)``: exactly ``count``, counted only once every
    email event of that reservation has been processed (``money.emails_sent``), so a
    duplicate still on its way is counted too, and fails the check.
    """

    async def arrived() -> list[dict[str, Any]] | None:
        messages = sink.messages(to=to)
        return messages if len(messages) >= count else None

    messages: list[dict[str, Any]] = await eventually(
        arrived, timeout_s=timeout_s, what=f"{count} messages to {to}"
    )
    if exact_for is None:
        return messages
    # Imported here: tests.support.money imports this module.
    from tests.support.money import emails_sent

    sessionmaker, reservation_id = exact_for
    subjects = await emails_sent(
        sessionmaker, sink, to=to, reservation_id=reservation_id, timeout_s=timeout_s
    )
    messages = sink.messages(to=to)
    assert len(messages) == count, f"expected {count} emails to {to}, got: {subjects}"
    return messages
