"""The SMTP sink (deploy/sandbox/smtp_sink.py) on a port of the test's choosing, optionally
requiring STARTTLS and a login, and a self-signed certificate made at test time.

A test points a worker at a port nobody listens on ("SMTP down"), then starts the sink
there ("back"). Like tests/support/sandboxes.py, the runner waits for ``/healthz``, stops
the process on exit and fails when it died on its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.sandboxes import (
    SANDBOX_DIR,
    SandboxError,
    SmtpSink,
    free_port,
    wait_until_http_ok,
)

STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path


def self_signed_certificate(directory: Path, common_name: str = "127.0.0.1") -> TlsFiles:
    """A throwaway key and certificate for ``common_name`` (openssl, one day)."""
    files = TlsFiles(cert=directory / "smtp-cert.pem", key=directory / "smtp-key.pem")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            f"/CN={common_name}",
            "-addext",
            f"subjectAltName=IP:{common_name}",
            "-keyout",
            str(files.key),
            "-out",
            str(files.cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return files


@contextmanager
def run_smtp_sink_on(
    log_dir: Path,
    smtp_port: int,
    *,
    tls: TlsFiles | None = None,
    login: tuple[str, str] | None = None,
) -> Iterator[SmtpSink]:
    """The sink listening for SMTP on ``smtp_port``; with ``tls`` it requires STARTTLS,
    with ``login`` (user, password) as well, AUTH as that user."""
    http_port = free_port()
    while http_port == smtp_port:  # nothing listens on smtp_port yet: the OS may offer it
        http_port = free_port()
    args = ["--host", "127.0.0.1", "--smtp-port", str(smtp_port), "--http-port", str(http_port)]
    if tls is not None:
        args += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
    if login is not None:
        args += ["--auth-user", login[0], "--auth-password", login[1]]
    log_path = log_dir / f"smtp-sink-{smtp_port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:  # the child keeps its own copy of the descriptor
        popen = subprocess.Popen(
            [sys.executable, str(SANDBOX_DIR / "smtp_sink.py"), *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    sink = SmtpSink(
        popen=popen,
        log_path=log_path,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        http_url=f"http://127.0.0.1:{http_port}",
    )
    try:
        try:
            wait_until_http_ok(f"{sink.http_url}/healthz", process=popen)
        except SandboxError as exc:
            raise SandboxError(f"smtp_sink.py did not start: {exc}\n{sink.log_tail()}") from exc
        yield sink
    finally:
        exit_code = popen.poll()
        if exit_code is None:
            popen.send_signal(signal.SIGTERM)
            try:
                popen.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                popen.kill()
                popen.wait()
    if exit_code is not None:
        raise SandboxError(f"smtp_sink.py died (exit code {exit_code}):\n{sink.log_tail()}")
