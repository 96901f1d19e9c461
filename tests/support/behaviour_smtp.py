"""The SMTP sink (deploy/sandbox/smtp_sink.py) on a port of the test's choosing, optionally
requiring STARTTLS and a login, and a self-signed certificate made at test time.

A test points a worker at a port nobody listens on ("SMTP down"), then starts the sink
there ("back"). It runs as tests/support/sandboxes.py runs it: waited for on ``/healthz``,
stopped on exit, a failure when it died on its own.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.sandboxes import SmtpSink, run_smtp_sink


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
    options: list[str] = []
    if tls is not None:
        options += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
    if login is not None:
        options += ["--auth-user", login[0], "--auth-password", login[1]]
    with run_smtp_sink(log_dir, smtp_port, options=options) as sink:
        yield sink
