"""The results: medians per scenario, every run, ratios against targets, the invariant."""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench import config
from tests.bench.cpu import CpuUsage
from tests.bench.database import InvariantReport
from tests.bench.scenarios import HOT_P99_TARGET_MS, RATIOS, SCENARIOS, Ratio
from tests.bench.wrk import WrkResult

NOISY_NEIGHBOURS = 0.10  # share of all cores taken by other people's processes


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@dataclass(frozen=True, slots=True)
class Machine:
    nproc: int
    cpu: str
    postgres: str
    redis: str
    python: str
    wrk: str
    load_average: tuple[float, float, float]

    @classmethod
    def describe(cls, *, postgres: str, redis: str, wrk: str) -> Machine:
        return cls(
            nproc=os.cpu_count() or 0,
            cpu=cpu_model(),
            postgres=postgres,
            redis=redis,
            python=platform.python_version(),
            wrk=wrk,
            load_average=os.getloadavg(),
        )


@dataclass(frozen=True, slots=True)
class RunOptions:
    duration_s: float
    connections: int
    threads: int
    runs: int
    warmup_s: float
    order: str = "interleaved"
    server_env: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Run:
    load: WrkResult
    cpu: CpuUsage

    def per_request_ms(self, seconds: float) -> float:
        return 1000 * seconds / self.load.requests if self.load.requests else 0.0

    @property
    def app_ms(self) -> float:
        """CPU of the gunicorn workers per request (all threads), in ms."""
        return self.per_request_ms(self.cpu.app_s)

    @property
    def database_ms(self) -> float:
        """CPU of the bench database's PostgreSQL backends per request, in ms."""
        return self.per_request_ms(self.cpu.database_s)

    @property
    def neighbours_share(self) -> float:
        """Share of the machine's cores taken by processes that are not the bench's."""
        cores = os.cpu_count() or 1
        seconds = self.load.duration_s * cores
        return self.cpu.neighbours_s / seconds if seconds else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            **self.load.as_json(),
            "cpu_s": {
                "app": round(self.cpu.app_s, 3),
                "database": round(self.cpu.database_s, 3),
                "wrk": round(self.cpu.wrk_s, 3),
                "neighbours": round(self.cpu.neighbours_s, 3),
                "machine": round(self.cpu.machine_s, 3),
            },
            "app_cpu_ms_per_request": round(self.app_ms, 4),
            "database_cpu_ms_per_request": round(self.database_ms, 4),
            "neighbours_share": round(self.neighbours_share, 3),
        }


@dataclass
class ScenarioResult:
    name: str
    runs: list[Run] = field(default_factory=list)
    invariants: list[InvariantReport] = field(default_factory=list)  # one per hold run

    @property
    def invariant_holds(self) -> bool:
        return all(invariant.holds for invariant in self.invariants)

    @property
    def title(self) -> str:
        return SCENARIOS[self.name].title

    @property
    def rps(self) -> float:
        return statistics.median(run.load.rps for run in self.runs)

    @property
    def p50_ms(self) -> float:
        return statistics.median(run.load.p50_ms for run in self.runs)

    @property
    def p99_ms(self) -> float:
        return statistics.median(run.load.p99_ms for run in self.runs)

    @property
    def app_ms(self) -> float:
        return statistics.median(run.app_ms for run in self.runs)

    @property
    def database_ms(self) -> float:
        return statistics.median(run.database_ms for run in self.runs)

    @property
    def errors(self) -> int:
        return sum(run.load.errors for run in self.runs)

    @property
    def refused(self) -> int:
        return sum(run.load.refused for run in self.runs)


@dataclass
class Report:
    machine: Machine
    options: RunOptions
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    results: dict[str, ScenarioResult] = field(default_factory=dict)
    profiles: dict[str, str] = field(default_factory=dict)

    def _pairs(self) -> Iterator[tuple[Ratio, ScenarioResult, ScenarioResult]]:
        for ratio in RATIOS:
            top, bottom = self.results.get(ratio.numerator), self.results.get(ratio.denominator)
            if top and bottom and top.runs and bottom.runs and bottom.rps:
                yield ratio, top, bottom

    def ratios(self) -> list[tuple[str, float, float | None]]:
        return [(r.title, top.rps / bottom.rps, r.target) for r, top, bottom in self._pairs()]

    def cpu_ratios(self) -> list[tuple[str, float]]:
        """The same pairs by app CPU per request (bottom / top): robust to noisy neighbours."""
        return [
            (ratio.title, bottom.app_ms / top.app_ms)
            for ratio, top, bottom in self._pairs()
            if top.app_ms
        ]

    def markdown(self) -> str:
        return "\n".join(
            [
                *self._header(),
                *self._medians(),
                *self._ratios(),
                *self._invariants(),
                *self._every_run(),
                *self._profiles(),
            ]
        )

    def _header(self) -> list[str]:
        m, o = self.machine, self.options
        load = ", ".join(f"{value:.2f}" for value in m.load_average)
        return [
            f"# tripbook bench, {self.started_at:%Y-%m-%d %H:%M} UTC",
            "",
            f"- machine: nproc {m.nproc}, CPU {m.cpu}, PostgreSQL {m.postgres}, "
            f"Redis {m.redis}, Python {m.python}, {m.wrk}; load average at start {load}",
            f"- load: wrk, {o.threads} thread(s), {o.connections} connections, "
            f"{o.runs} run(s) of {o.duration_s:g} s, {o.order}, each on a fresh server after a "
            f"{o.warmup_s:g} s warm-up, to 127.0.0.1",
            f"- servers: gunicorn, {config.WORKERS} workers, `deploy/gunicorn.conf.py` "
            "(uvicorn-worker, uvloop, httptools) for every app; GUNICORN_MAX_REQUESTS=0 "
            "(no worker recycling during a run)",
            "- tripbook: TRIPBOOK_ENV=production, JSON access log at INFO to a file, rate "
            f"limits raised to {config.RATE_LIMIT} via TRIPBOOK_RATE_LIMIT_* (the limiter "
            "still counts every request in Redis), outbox relay publishing to Redis",
            *([f"- extra server environment: `{' '.join(o.server_env)}`"] if o.server_env else []),
            f"- the {m.nproc} cores are shared by wrk, PostgreSQL, Redis and gunicorn: "
            "compare rows with each other, not with other machines",
            "",
        ]

    def _medians(self) -> list[str]:
        lines = [
            "## Results (medians of the runs; errors and refused: totals over all runs)",
            "",
            "| scenario | req/s | p50 ms | p99 ms | errors | refused | app CPU ms/req "
            "| DB CPU ms/req |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for result in self.results.values():
            if result.runs:
                lines.append(
                    f"| {result.title} | {result.rps:,.0f} | {result.p50_ms:.2f} | "
                    f"{result.p99_ms:.2f} | {result.errors} | {result.refused} | "
                    f"{result.app_ms:.3f} | {result.database_ms:.3f} |"
                )
        shares = [run.neighbours_share for r in self.results.values() for run in r.runs]
        if shares and max(shares) > NOISY_NEIGHBOURS:
            lines += [
                "",
                f"**Other work shared the machine**: neighbours took up to "
                f"{100 * max(shares):.0f}% of all cores during runs (median "
                f"{100 * statistics.median(shares):.0f}%); req/s and latency are pessimistic "
                "for those runs, and CPU per request is inflated too, though less (up to ~1.5x "
                "seen with neighbours at 40-50%).",
            ]
        lines += [
            "",
            "CPU ms/req: CPU time of the 2 gunicorn workers (app) and of the bench database's "
            "PostgreSQL backends (DB) over the run, divided by the requests served; it moves "
            "less than req/s when other work shares the machine (see `neighbours` per run).",
        ]
        return [*lines, ""]

    def _ratios(self) -> list[str]:
        lines = [
            "## Ratios (req/s) and targets",
            "",
            "| | value | target | |",
            "|---|---:|---:|---|",
        ]
        for title, value, target in self.ratios():
            verdict = "" if target is None else ("met" if value >= target else "**missed**")
            wanted = "" if target is None else f"≥ {target:g}"
            lines.append(f"| {title} | {value:.2f} | {wanted} | {verdict} |")
        for title, value in self.cpu_ratios():
            lines.append(f"| {title}, by app CPU per request | {value:.2f} | | (informative) |")
        hot = self.results.get("holds_hot")
        if hot and hot.runs:
            verdict = "met" if hot.p99_ms <= HOT_P99_TARGET_MS else "**missed**"
            lines.append(
                f"| p99 of tripbook hot holds, ms | {hot.p99_ms:.1f} | "
                f"≤ {HOT_P99_TARGET_MS:g} | {verdict} |"
            )
        return [*lines, ""] if len(lines) > 4 else []

    def _invariants(self) -> list[str]:
        checked = [r for r in self.results.values() if r.invariants]
        if not checked:
            return []
        lines = [
            "## Seat invariant after every hold run (DESIGN §4)",
            "",
            "For each departure: seats_total = seats_available + seats of held, "
            "payment_pending and confirmed reservations (each hold run starts from no "
            "reservations and all seats free).",
            "",
        ]
        for result in checked:
            held = sum(invariant.reservations for invariant in result.invariants)
            seats = sum(invariant.seats_held for invariant in result.invariants)
            broken = [i for i in result.invariants if not i.holds]
            verdict = (
                "OK"
                if not broken
                else f"**VIOLATED** in {len(broken)} run(s): {broken[0].violations[:3]}"
            )
            lines.append(
                f"- {result.title}: {verdict} in {len(result.invariants)} run(s), "
                f"{result.invariants[0].departures} departures checked each time, "
                f"{held} reservations holding {seats} seats in all"
            )
        return [*lines, ""]

    def _every_run(self) -> list[str]:
        lines = [
            "## Every run",
            "",
            "| scenario | run | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | refused "
            "| app CPU ms/req | DB CPU ms/req | neighbours | statuses |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for result in self.results.values():
            for index, run in enumerate(result.runs, start=1):
                load = run.load
                statuses = ", ".join(f"{s}: {n}" for s, n in sorted(load.statuses.items()))
                lines.append(
                    f"| {result.name} | {index} | {load.rps:,.0f} | {load.p50_ms:.2f} | "
                    f"{load.p90_ms:.2f} | {load.p99_ms:.2f} | {load.max_ms:.1f} | "
                    f"{load.errors} | {load.refused} | {run.app_ms:.3f} | "
                    f"{run.database_ms:.3f} | {100 * run.neighbours_share:.0f}% | {statuses} |"
                )
        lines += [
            "",
            "neighbours: share of all cores taken during the run by processes that are not the "
            "bench's (not the app, its database backends, wrk, Redis or the harness): other "
            "people's work on the machine. Throughput and latency of such runs are pessimistic.",
        ]
        return [*lines, ""]

    def _profiles(self) -> list[str]:
        lines: list[str] = []
        for name, summary in self.profiles.items():
            lines += [f"## Profile: {SCENARIOS[name].title} (an extra, unreported run)", ""]
            lines += [summary, ""]
        return lines

    def as_json(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at.isoformat(),
            "machine": {
                "nproc": self.machine.nproc,
                "cpu": self.machine.cpu,
                "postgres": self.machine.postgres,
                "redis": self.machine.redis,
                "python": self.machine.python,
                "wrk": self.machine.wrk,
                "load_average": list(self.machine.load_average),
            },
            "options": {
                "duration_s": self.options.duration_s,
                "connections": self.options.connections,
                "threads": self.options.threads,
                "runs": self.options.runs,
                "warmup_s": self.options.warmup_s,
                "order": self.options.order,
                "server_env": list(self.options.server_env),
                "workers": config.WORKERS,
                "rate_limit": config.RATE_LIMIT,
            },
            "scenarios": {
                name: {
                    "title": result.title,
                    "median": {
                        "rps": round(result.rps, 1),
                        "p50_ms": result.p50_ms,
                        "p99_ms": result.p99_ms,
                        "app_cpu_ms_per_request": round(result.app_ms, 4),
                        "database_cpu_ms_per_request": round(result.database_ms, 4),
                    },
                    "errors": result.errors,
                    "refused": result.refused,
                    "runs": [run.as_json() for run in result.runs],
                    "invariant": [
                        {
                            "holds": invariant.holds,
                            "departures": invariant.departures,
                            "reservations": invariant.reservations,
                            "seats_held": invariant.seats_held,
                            "violations": invariant.violations,
                        }
                        for invariant in result.invariants
                    ],
                }
                for name, result in self.results.items()
                if result.runs
            },
            "ratios": [
                {"ratio": title, "value": round(value, 3), "target": target}
                for title, value, target in self.ratios()
            ],
            "cpu_ratios": [
                {"ratio": title, "value": round(value, 3)} for title, value in self.cpu_ratios()
            ],
            "profiles": self.profiles,
        }

    def write(self, directory: Path) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        stem = f"bench-{self.started_at:%Y%m%dT%H%M%SZ}"
        markdown = directory / f"{stem}.md"
        data = directory / f"{stem}.json"
        markdown.write_text(self.markdown() + "\n")
        data.write_text(json.dumps(self.as_json(), indent=2) + "\n")
        return markdown, data
