"""Where the time goes: py-spy on the gunicorn workers, pg_stat_activity on the database.

Used by ``--profile``: one extra run per scenario, not counted in the results, since
sampling slows the workers down a little.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.bench import database

SAMPLE_RATE_HZ = 250
PG_SAMPLE_INTERVAL_S = 0.05
FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^():]+)(?::\d+)?\)$")

# Self time is charged to the first of these found in a sample's file path, leaf first.
BUCKETS = (
    ("logging (structlog, logging)", ("structlog/", "/logging/")),
    ("JSON (json, orjson)", ("/json/", "orjson")),
    ("pydantic", ("pydantic",)),
    ("asyncpg", ("asyncpg/",)),
    ("SQLAlchemy", ("sqlalchemy/",)),
    ("redis / limits", ("redis/", "limits/")),
    ("kombu / celery (outbox relay)", ("kombu/", "celery/")),
    ("prometheus_client", ("prometheus_client/",)),
    ("JWT", ("jwt/",)),
    ("FastAPI / Starlette", ("fastapi/", "starlette/")),
    ("uvicorn / httptools", ("uvicorn/", "httptools/")),
    ("asyncio / anyio", ("asyncio/", "anyio/", "uvloop/")),
    ("tripbook", ("tripbook/",)),
    ("bench apps", ("tests/bench/",)),
)


def find_py_spy() -> str:
    candidates = [Path(sys.executable).with_name("py-spy"), shutil.which("py-spy")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return str(candidate)
    raise RuntimeError(
        "--profile needs py-spy: `.venv/bin/pip install py-spy` (kept out of pyproject.toml)"
    )


@dataclass
class Recording:
    outputs: list[Path]
    processes: list[subprocess.Popen[bytes]]
    pg_states: Counter[str] = field(default_factory=Counter)
    pg_samples: int = 0


@contextmanager
def record(
    pids: list[int], duration_s: float, out_dir: Path, name: str, *, sample_database: bool
) -> Iterator[Recording]:
    """py-spy (collapsed stacks, CPU samples only) on every worker, and pg_stat_activity of
    the bench database when the scenario uses it (it does not exist before one does)."""
    py_spy = find_py_spy()
    outputs = [out_dir / f"profile-{name}-{pid}.txt" for pid in pids]
    processes = [
        subprocess.Popen(
            [
                py_spy,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, round(duration_s))),
                "--rate",
                str(SAMPLE_RATE_HZ),
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid, output in zip(pids, outputs, strict=True)
    ]
    recording = Recording(outputs=outputs, processes=processes)
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_pg, args=(recording, stop), daemon=True)
    if sample_database:
        sampler.start()
    try:
        yield recording
    finally:
        stop.set()
        if sampler.is_alive():
            sampler.join(timeout=10)
        for process in processes:
            try:
                process.wait(timeout=duration_s + 30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _sample_pg(recording: Recording, stop: threading.Event) -> None:
    async def sample() -> None:
        connection = await database.connect()
        try:
            while not stop.is_set():
                rows = await connection.fetch(
                    "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'"
                )
                for row in rows:
                    wait = f" / {row['wait_event_type']}:{row['wait_event']}"
                    recording.pg_states[f"{row['state']}{wait if row['wait_event'] else ''}"] += 1
                recording.pg_samples += 1
                await asyncio.sleep(PG_SAMPLE_INTERVAL_S)
        finally:
            await connection.close()

    asyncio.run(sample())


def _stacks(paths: list[Path]) -> Iterator[tuple[list[str], int]]:
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if stack and count.isdigit():
                yield stack.split(";"), int(count)


def _bucket(frame: str) -> str | None:
    for title, needles in BUCKETS:
        if any(needle in frame for needle in needles):
            return title
    return None


def _short(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame
    file = match["file"]
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{match['function']} ({file})"


def summarize(recording: Recording, duration_s: float, top: int = 25) -> str:
    """Markdown: CPU by library (self time), the hottest frames, and database states."""
    total = 0
    by_bucket: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for frames, count in _stacks(recording.outputs):
        total += count
        leaf_bucket = next(
            (b for b in (_bucket(f) for f in reversed(frames)) if b), "other (C, stdlib)"
        )
        by_bucket[leaf_bucket] += count
        self_time[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames if "tripbook/" in f or "tests/bench/" in f}:
            inclusive[frame] += count
    workers = len(recording.outputs)
    possible = SAMPLE_RATE_HZ * duration_s * workers
    if not total:
        return "No CPU samples were recorded (is py-spy allowed to ptrace?)."
    lines = [
        f"CPU samples: {total} of {possible:.0f} possible ({workers} workers x "
        f"{duration_s:.0f} s x {SAMPLE_RATE_HZ} Hz): the workers were on CPU "
        f"{100 * total / possible:.0f}% of the time.",
        "",
        "| self time by library | share |",
        "|---|---:|",
        *(f"| {name} | {100 * n / total:.1f}% |" for name, n in by_bucket.most_common()),
        "",
        "| hottest frames (self) | share |",
        "|---|---:|",
        *(f"| `{name}` | {100 * n / total:.1f}% |" for name, n in self_time.most_common(top)),
        "",
        "| tripbook / bench functions (inclusive) | share |",
        "|---|---:|",
        *(f"| `{name}` | {100 * n / total:.1f}% |" for name, n in inclusive.most_common(top)),
    ]
    if recording.pg_samples:
        lines += [
            "",
            f"PostgreSQL backends of the bench database, mean count per state over "
            f"{recording.pg_samples} samples:",
            "",
            "| state / wait event | backends |",
            "|---|---:|",
            *(
                f"| {state} | {n / recording.pg_samples:.2f} |"
                for state, n in recording.pg_states.most_common()
            ),
        ]
    return "\n".join(lines)
