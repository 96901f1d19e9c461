"""CPU seconds spent during a run, read from /proc, by whom: per request it moves much less
than requests/s and latency when other work shares the machine, and ``neighbours`` says
how much other work there was."""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

from tests.bench import config

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
DATABASE_TITLE = f" {config.DATABASE_NAME} ".encode()


def _process_cpu_s(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime, all threads


def _classify(pid: int, workers: set[int]) -> str:
    if pid in workers:
        return "app"
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "gone"
    if title.startswith(b"postgres: ") and DATABASE_TITLE in title:
        return "database"
    if pid == os.getpid() or title.startswith(b"redis-server"):
        return "bench"  # the harness itself, the Redis it uses
    return "neighbours"


def _machine_busy_s() -> float:
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


@dataclass(frozen=True, slots=True)
class Snapshot:
    processes: dict[int, tuple[str, float]]  # pid: (class, CPU seconds so far)
    children_s: float
    busy_s: float

    @classmethod
    def take(cls, worker_pids: list[int]) -> Snapshot:
        workers = set(worker_pids)
        processes = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                pid = int(entry.name)
                processes[pid] = (_classify(pid, workers), _process_cpu_s(pid))
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # wrk, once it has been waited
        return cls(processes, usage.ru_utime + usage.ru_stime, _machine_busy_s())


@dataclass(frozen=True, slots=True)
class CpuUsage:
    """Seconds of CPU during one run, by whom."""

    app_s: float  # the gunicorn workers
    database_s: float  # PostgreSQL backends connected to the bench database
    wrk_s: float
    neighbours_s: float  # every other process alive across the run: other people's work
    machine_s: float  # all cores, including the kernel's network work and Redis


def usage_between(before: Snapshot, after: Snapshot) -> CpuUsage:
    spent: dict[str, float] = {}
    for pid, (kind, seconds) in after.processes.items():
        # A process that appeared during the run counts from zero; one that left is lost.
        previous = before.processes.get(pid, (kind, 0.0))[1]
        spent[kind] = spent.get(kind, 0.0) + max(0.0, seconds - previous)
    return CpuUsage(
        app_s=spent.get("app", 0.0),
        database_s=spent.get("database", 0.0),
        wrk_s=after.children_s - before.children_s,
        neighbours_s=spent.get("neighbours", 0.0),
        machine_s=after.busy_s - before.busy_s,
    )
