"""``make bench``: measured requests/s and latency of tripbook and its references.

See ``tests/bench/__init__.py`` for what a run does, the scenarios and the commands.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.bench import config, cpu, database, profile, report, server, wrk
from tests.bench.scenarios import SCENARIOS, DataFiles, Scenario
from tests.support import world
from tests.support.servers import Gunicorn


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.run", description=__doc__)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per scenario")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up")
    parser.add_argument("--threads", type=int, default=1, choices=(1, 2), help="wrk threads")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated, from: {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--order",
        choices=("interleaved", "grouped"),
        default="interleaved",
        help="interleaved: run 1 of every scenario, then run 2...; grouped: all runs of one",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy an extra run of each")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs")
    parser.add_argument("--results-dir", type=Path, default=config.RESULTS_DIR)
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for every server (repeatable), e.g. to try a setting",
    )
    args = parser.parse_args(argv)
    if any("=" not in item for item in args.server_env):
        parser.error("--server-env takes NAME=VALUE")
    unknown = [name for name in args.scenarios.split(",") if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)}")
    if args.duration < 1 or args.runs < 1 or args.connections < 1 or args.warmup < 0:
        parser.error("--duration ≥ 1, --runs ≥ 1, --connections ≥ 1, --warmup ≥ 0")
    return args


def say(message: str) -> None:
    """Progress goes to stderr; stdout carries only the report."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def require_service(name: str, url: str, default_port: int) -> None:
    problem = world.unreachable(url, default_port)
    if problem:
        raise SystemExit(f"{name} is {problem}")


def run_order(selected: list[Scenario], runs: int, order: str) -> list[Scenario]:
    """Interleaved: run 1 of every scenario, then run 2 of every one... so that other work
    on the machine, which comes and goes, falls on every scenario alike."""
    if order == "grouped":
        return [scenario for scenario in selected for _ in range(runs)]
    return [scenario for _ in range(runs) for scenario in selected]


def write_data_files(directory: Path, seed: database.Seed) -> DataFiles:
    files = DataFiles(
        tokens=directory / "tokens.txt",
        spread_departures=directory / "spread-departures.txt",
        hot_departure=directory / "hot-departure.txt",
        trip_paths=directory / "trip-paths.txt",
    )
    files.tokens.write_text("\n".join(seed.tokens) + "\n")
    files.spread_departures.write_text("\n".join(map(str, seed.spread_departure_ids)) + "\n")
    files.hot_departure.write_text(f"{seed.hot_departure_id}\n")
    files.trip_paths.write_text("".join(f"/v1/trips/{trip}\n" for trip in seed.trip_ids))
    return files


LOCK_PATH = Path(tempfile.gettempdir()) / "tripbook-bench.lock"


@contextmanager
def exclusive_run() -> Iterator[None]:
    """One bench at a time on a machine: a second would drop the first one's database and
    take half its CPU."""
    with LOCK_PATH.open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise SystemExit(
                f"another bench run is in progress (pid {holder}, lock {LOCK_PATH}); "
                "wait for it to finish"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        yield


@contextmanager
def work_directory(keep: bool, results_dir: Path) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tripbook-bench-"))
    try:
        yield path
    finally:
        if keep:
            kept = results_dir / path.name
            shutil.copytree(path, kept, dirs_exist_ok=True)
            say(f"logs kept in {kept}")
        shutil.rmtree(path, ignore_errors=True)


class Bench:
    def __init__(
        self, args: argparse.Namespace, world: config.World, wrk_path: str, workdir: Path
    ) -> None:
        self.args = args
        self.world = world
        self.wrk_path = wrk_path
        self.workdir = workdir
        self.files: DataFiles | None = None

    def prepare_data(self) -> None:
        say(f"database {config.DATABASE_NAME}: recreating, migrating, seeding")
        self.files = write_data_files(self.workdir, database.prepare(self.world.jwt_secret))

    def wrk(self, url: str, scenario: Scenario, duration_s: float) -> wrk.WrkResult:
        return wrk.run(
            self.wrk_path,
            url,
            scenario.script,
            scenario.script_args(self.files) if self.files else [],
            duration_s=duration_s,
            connections=self.args.connections,
            threads=self.args.threads,
        )

    @contextmanager
    def server(self, scenario: Scenario, label: str) -> Iterator[tuple[Gunicorn, str]]:
        """A fresh gunicorn for ``scenario``, warmed up; yields it and the URL to load."""
        extra = dict(item.split("=", 1) for item in self.args.server_env)
        env = self.world.server_environment(
            {**scenario.server.env, **extra}, self.workdir / f"metrics-{label}"
        )
        with server.run_server(scenario.server.app, env, self.workdir, label) as running:
            url = running.url + scenario.path
            if self.args.warmup:
                self.wrk(url, scenario, self.args.warmup)
            yield running, url
            if "unhandled_exception" in running.log():
                say(f"  {label}: the server logged unhandled exceptions")

    def run(self, scenario: Scenario, result: report.ScenarioResult) -> None:
        """One measured run of ``scenario`` on its own server, appended to ``result``."""
        index = len(result.runs) + 1
        if scenario.holds:
            asyncio.run(database.reset_holds())
        with self.server(scenario, f"{scenario.name}-{index}") as (running, url):
            run = self.measure(running, url, scenario)
        result.runs.append(run)
        load = run.load
        say(
            f"  {scenario.name} run {index}: {load.rps:,.0f} req/s, p50 {load.p50_ms:.2f} ms, "
            f"p99 {load.p99_ms:.2f} ms, errors {load.errors}, refused {load.refused}, "
            f"app CPU {run.app_ms:.2f} ms/req, neighbours {100 * run.neighbours_share:.0f}%"
        )
        if scenario.holds:
            invariant = asyncio.run(database.check_invariant())
            result.invariants.append(invariant)
            say(f"  {scenario.name} run {index} invariant: {invariant.describe()}")
        database.clear_redis_keys()  # the relay's queued emails, the limiter's windows

    def measure(self, running: Gunicorn, url: str, scenario: Scenario) -> report.Run:
        pids = running.worker_pids()
        before = cpu.Snapshot.take(pids)
        load = self.wrk(url, scenario, self.args.duration)
        return report.Run(load=load, cpu=cpu.usage_between(before, cpu.Snapshot.take(pids)))

    def profile(self, scenario: Scenario) -> str:
        """An extra run with py-spy on the workers; its summary, not part of the results."""
        self.args.results_dir.mkdir(parents=True, exist_ok=True)
        duration = self.args.duration
        if scenario.holds:
            asyncio.run(database.reset_holds())
        with self.server(scenario, f"{scenario.name}-profile") as (running, url):
            pids = running.worker_pids()
            with profile.record(
                pids,
                duration,
                self.args.results_dir,
                scenario.name,
                sample_database=scenario.needs_data,
            ) as rec:
                load = self.wrk(url, scenario, duration)
        say(f"  {scenario.name} profiled run: {load.rps:,.0f} req/s (not reported)")
        database.clear_redis_keys()
        return profile.summarize(rec, duration)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with exclusive_run():
        return bench_main(args)


def bench_main(args: argparse.Namespace) -> int:
    try:
        wrk_path = wrk.find_or_install()
    except wrk.WrkMissing as exc:
        say(f"error: {exc}")
        return 2
    if args.profile:
        profile.find_py_spy()
    require_service("PostgreSQL", config.PG_SERVER, 5432)
    require_service("Redis", config.REDIS_URL, 6379)
    selected = [SCENARIOS[name] for name in args.scenarios.split(",")]
    machine = report.Machine.describe(
        postgres=asyncio.run(database.server_version()),
        redis=database.redis_version(),
        wrk=wrk.version(wrk_path),
    )
    options = report.RunOptions(
        duration_s=args.duration,
        connections=args.connections,
        threads=args.threads,
        runs=args.runs,
        warmup_s=args.warmup,
        order=args.order,
        server_env=tuple(args.server_env),
    )
    results = report.Report(machine=machine, options=options)
    failed: list[str] = []
    with work_directory(args.keep_logs, args.results_dir) as workdir:
        bench = Bench(args, config.World(), wrk_path, workdir)
        database.clear_redis_keys()
        try:
            if any(scenario.needs_data for scenario in selected):
                bench.prepare_data()
            for scenario in selected:
                results.results[scenario.name] = report.ScenarioResult(scenario.name)
            for scenario in run_order(selected, args.runs, args.order):
                if scenario.name in failed:
                    continue
                say(f"{scenario.title}")
                try:
                    bench.run(scenario, results.results[scenario.name])
                except RuntimeError as exc:  # GunicornError too
                    say(f"  {scenario.name} failed: {exc}")
                    failed.append(scenario.name)
            for scenario in selected if args.profile else []:
                if scenario.name in failed:
                    continue
                say(f"{scenario.title}: profiling")
                results.profiles[scenario.name] = bench.profile(scenario)
        finally:
            database.clear_redis_keys()
    markdown_path, json_path = results.write(args.results_dir)
    sys.stdout.write(results.markdown() + "\n")
    say(f"written: {markdown_path} and {json_path}")
    broken = [r.name for r in results.results.values() if not r.invariant_holds]
    if failed or broken:
        say(f"failed: {', '.join(failed + broken)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
