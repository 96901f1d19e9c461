"""Start the local stand-ins for external services (deploy/sandbox) as real processes.

Each runner picks free ports, logs to a file in the caller's log directory, waits until
`/healthz` answers, and on exit stops the process (SIGTERM, then SIGKILL after 5 s). A
process that dies before it is asked to stop is a failure, reported with its log's tail.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

SANDBOX_DIR = Path(__file__).resolve().parents[2] / "deploy" / "sandbox"
STOP_TIMEOUT_S = 5.0
LOG_TAIL_CHARS = 3000


class SandboxError(RuntimeError):
    """A sandbox process did not start, or died while it was in use."""


def free_port() -> int:
    """A port the OS just had free on 127.0.0.1 (small race: good enough for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def closed_port() -> int:
    """A port nothing listens on, to be refused at: one ``free_port`` just handed back."""
    return free_port()


def wait_until_http_ok(
    url: str, timeout_s: float = 15.0, *, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll `url` until it answers 200; give up at the deadline, or at once if `process`
    (the server behind it) has exited, since waiting longer could not help."""
    deadline = time.monotonic() + timeout_s
    last = "no attempt made"
    with httpx.Client(timeout=1.0) as client:
        while True:
            if process is not None and process.poll() is not None:
                raise SandboxError(f"{url}: the server exited with code {process.returncode}")
            try:
                response = client.get(url)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return
                last = f"HTTP {response.status_code}"
            if time.monotonic() >= deadline:
                raise SandboxError(f"{url} did not answer 200 within {timeout_s}s ({last})")
            time.sleep(0.05)  # poll interval, not a wait for something to happen


@dataclass
class RunningProcess:
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self) -> str:
        return self.log()[-LOG_TAIL_CHARS:]


@dataclass
class PaymentSandbox(RunningProcess):
    url: str

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/_sandbox/stats", timeout=5.0)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    def reset(self) -> None:
        httpx.post(f"{self.url}/_sandbox/reset", timeout=5.0).raise_for_status()

    def set_latency(self, delay_s: float) -> None:
        """Make every charge and refund wait ``delay_s`` before it is handled (0: off)."""
        response = httpx.put(f"{self.url}/_sandbox/latency", json={"delay_s": delay_s}, timeout=5.0)
        response.raise_for_status()

    def set_faults(self, error_rate: float, seed: int | None = None) -> None:
        """Answer each charge and refund 503 with probability ``error_rate`` (0: off), half
        the time before and half after applying it; a ``seed`` makes the draws repeatable."""
        body = {"error_rate": error_rate, "seed": seed}
        response = httpx.put(f"{self.url}/_sandbox/faults", json=body, timeout=5.0)
        response.raise_for_status()

    def charges(self, idempotency_key: str | None = None) -> list[dict[str, Any]]:
        """The processor's view of its charges (all, or the one under ``idempotency_key``)."""
        return self._items("/v1/charges", idempotency_key)

    def refunds(self, idempotency_key: str | None = None) -> list[dict[str, Any]]:
        """The processor's view of its refunds (all, or the one under ``idempotency_key``)."""
        return self._items("/v1/refunds", idempotency_key)

    def _items(self, path: str, idempotency_key: str | None) -> list[dict[str, Any]]:
        params = {"idempotency_key": idempotency_key} if idempotency_key is not None else None
        response = httpx.get(f"{self.url}{path}", params=params, timeout=5.0)
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        return items


@dataclass
class SmtpSink(RunningProcess):
    smtp_host: str
    smtp_port: int
    http_url: str

    def messages(self, to: str | None = None) -> list[dict[str, Any]]:
        params = {"to": to} if to is not None else None
        response = httpx.get(f"{self.http_url}/messages", params=params, timeout=5.0)
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def clear(self) -> None:
        httpx.delete(f"{self.http_url}/messages", timeout=5.0).raise_for_status()

    def hold(self, to: str) -> None:
        """Stall mail to ``to``: the sender waits for its "250" until ``release()``."""
        httpx.post(f"{self.http_url}/holds", json={"to": to}, timeout=5.0).raise_for_status()

    def waiting(self) -> list[str]:
        """The recipients of the messages stalled right now (one entry per message)."""
        response = httpx.get(f"{self.http_url}/holds", timeout=5.0)
        response.raise_for_status()
        waiting: list[str] = response.json()["waiting"]
        return waiting

    def release(self) -> None:
        httpx.delete(f"{self.http_url}/holds", timeout=5.0).raise_for_status()


def stop_process(popen: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL if it is still running after ``timeout_s``; nothing if it has
    exited already."""
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


@contextmanager
def _run_script(
    script: str, args: list[str], log_path: Path, health_url: str
) -> Iterator[RunningProcess]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
        popen = subprocess.Popen(
            [sys.executable, str(SANDBOX_DIR / script), *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    running = RunningProcess(popen=popen, log_path=log_path)
    try:
        try:
            wait_until_http_ok(health_url, process=popen)
        except SandboxError as exc:
            raise SandboxError(f"{script} did not start: {exc}\n{running.log_tail()}") from exc
        yield running
    finally:
        exit_code = popen.poll()
        stop_process(popen)
    if exit_code is not None:
        raise SandboxError(f"{script} died (exit code {exit_code}):\n{running.log_tail()}")


@contextmanager
def run_payment_sandbox(
    log_dir: Path, timeout_delay_s: float = 30, *, port: int | None = None
) -> Iterator[PaymentSandbox]:
    """The payment gateway sandbox; `timeout_delay_s` is how long `tok_timeout` hangs.
    `port`: where to listen, e.g. where a worker already looks for a gateway that is down."""
    port = port or free_port()
    url = f"http://127.0.0.1:{port}"
    args = ["--host", "127.0.0.1", "--port", str(port), "--timeout-delay-s", str(timeout_delay_s)]
    log_path = log_dir / f"payment-sandbox-{port}.log"
    with _run_script("payment_gateway.py", args, log_path, f"{url}/healthz") as running:
        yield PaymentSandbox(popen=running.popen, log_path=log_path, url=url)


@contextmanager
def run_smtp_sink(
    log_dir: Path, smtp_port: int | None = None, *, options: Sequence[str] = ()
) -> Iterator[SmtpSink]:
    """The SMTP sink on `smtp_port` (None: a free one); `/healthz` answering means the SMTP
    port is listening too. `options`: more of the sink's arguments (TLS, a login)."""
    smtp_port = smtp_port or free_port()
    http_port = free_port()
    while http_port == smtp_port:  # nothing listens on smtp_port yet: the OS may offer it
        http_port = free_port()
    http_url = f"http://127.0.0.1:{http_port}"
    args = ["--host", "127.0.0.1", "--smtp-port", str(smtp_port), "--http-port", str(http_port)]
    args += options
    log_path = log_dir / f"smtp-sink-{smtp_port}.log"
    with _run_script("smtp_sink.py", args, log_path, f"{http_url}/healthz") as running:
        yield SmtpSink(
            popen=running.popen,
            log_path=log_path,
            smtp_host="127.0.0.1",
            smtp_port=smtp_port,
            http_url=http_url,
        )
