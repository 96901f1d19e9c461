"""wrk: found (or installed from Debian's packages), run, and its JSON summary parsed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tests.bench import config

RESULT_MARKER = "BENCH_RESULT "
INSTALL_TIMEOUT_S = 300
REQUEST_TIMEOUT = "5s"  # a reply slower than this counts as a socket timeout error


class WrkMissing(RuntimeError):
    """wrk is not installed and could not be installed."""


def find_or_install() -> str:
    """The path of wrk; installs Debian's package when running as root with apt-get."""
    found = shutil.which("wrk")
    if found:
        return found
    apt_get = shutil.which("apt-get")
    if apt_get and os.geteuid() == 0:
        for step in ([apt_get, "update", "-qq"], [apt_get, "install", "-y", "-qq", "wrk"]):
            completed = subprocess.run(
                step, capture_output=True, timeout=INSTALL_TIMEOUT_S, check=False
            )
            if completed.returncode != 0:
                break
        found = shutil.which("wrk")
        if found:
            return found
    raise WrkMissing(
        "wrk is not installed and could not be installed here: run "
        "`apt-get update && apt-get install -y wrk` (as root) and try again"
    )


def version(wrk: str) -> str:
    completed = subprocess.run([wrk, "--version"], capture_output=True, text=True, check=False)
    return (completed.stdout or completed.stderr).splitlines()[0].split(" Copyright")[0]


@dataclass(frozen=True, slots=True)
class WrkResult:
    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: int
    statuses: dict[int, int]
    refused: int

    @property
    def rps(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0

    @property
    def errors(self) -> int:
        """Socket errors and every response outside 2xx except refused holds."""
        failed = sum(count for status, count in self.statuses.items() if not 200 <= status < 300)
        return self.socket_errors + failed - self.refused

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "rps": round(self.rps, 1), "errors": self.errors}


def parse(output: str) -> WrkResult:
    line = next((ln for ln in output.splitlines() if ln.startswith(RESULT_MARKER)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{output[-2000:]}")
    raw = json.loads(line.removeprefix(RESULT_MARKER))
    latency = raw["latency_us"]
    errors = raw["errors"]
    return WrkResult(
        requests=raw["requests"],
        duration_s=raw["duration_us"] / 1e6,
        p50_ms=latency["p50"] / 1000,
        p90_ms=latency["p90"] / 1000,
        p99_ms=latency["p99"] / 1000,
        max_ms=latency["max"] / 1000,
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        statuses={int(status): count for status, count in raw["statuses"].items()},
        refused=raw["refused"],
    )


def run(
    wrk: str,
    url: str,
    script: str,
    script_args: list[str],
    *,
    duration_s: float,
    connections: int,
    threads: int,
) -> WrkResult:
    command = [
        wrk,
        f"--threads={min(threads, connections)}",
        f"--connections={connections}",
        f"--duration={max(1, round(duration_s))}s",
        f"--timeout={REQUEST_TIMEOUT}",
        f"--script={config.LUA_DIR / script}",
        url,
        *(["--", *script_args] if script_args else []),
    ]
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=duration_s + 60,  # bounded even if wrk itself hangs
        check=False,
        env={**os.environ, "BENCH_LUA_DIR": str(Path(config.LUA_DIR))},
    )
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}):\n{completed.stderr[-2000:]}")
    return parse(completed.stdout)
