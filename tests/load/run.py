"""``make load``: locust against a local tripbook stack (or ``--host``), then checks.

Locally it starts everything on 127.0.0.1 with its own world: the ``tripbook_load``
database (dropped, migrated and seeded every run; left behind for inspection), the Redis
key prefix ``tripbook-load:``, gunicorn (2 workers), a Celery worker and beat, the payment
sandbox and the SMTP sink. Then locust runs headless for ``--run-time`` seconds, writes CSV
and HTML reports to ``tests/load/results/<timestamp>/`` (with the servers' logs), and the
run is judged:

1. no seat oversold: per departure, seats_total = seats_available + seats held, pending
   or confirmed, and seats_available ≥ 0;
2. unexpected 5xx below 0.1 % of requests (409 SEATS_UNAVAILABLE and 429 are expected);
3. every reservation paid for ends ``confirmed`` (or ``cancelled`` after its charge
   succeeded), after a bounded wait for the worker to drain;
4. other unexpected failures (4xx other than the expected ones, connection errors) below
   0.1 % of requests.

The exit code is 0 only when every check passed. With ``--host`` nothing is started;
checks 1 and 3 need ``--database-url`` (that host's database) and are skipped, saying
so, without it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests import environment
from tests.load import database
from tests.support import world
from tests.support.sandboxes import run_payment_sandbox, run_smtp_sink
from tests.support.servers import run_gunicorn
from tests.support.workers import run_beat, run_worker

LOAD_DIR = Path(__file__).resolve().parent
LOCUSTFILE = LOAD_DIR / "locustfile.py"
RESULTS_DIR = LOAD_DIR / "results"

DATABASE_NAME = "tripbook_load"
DATABASE_URL = f"{environment.PG_SERVER}/{DATABASE_NAME}"
REDIS_URL = f"{environment.REDIS_SERVER}/0"
BROKER_URL = f"{environment.REDIS_SERVER}/1"
KEY_PREFIX = "tripbook-load:"
ERROR_BUDGET = 0.001  # 0.1 % of requests


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.load.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--run-time", type=float, default=60.0, help="seconds of load (60)")
    parser.add_argument("--users", type=int, default=50, help="concurrent users (50)")
    parser.add_argument("--spawn-rate", type=float, default=10.0, help="users started/s (10)")
    parser.add_argument(
        "--host", help="an already running tripbook to load (nothing is started locally)"
    )
    parser.add_argument(
        "--database-url",
        help="with --host: that tripbook's PostgreSQL URL, for the seat and payment checks",
    )
    parser.add_argument(
        "--flash-departure",
        type=int,
        help="with --host: the flash-sale departure id (default: the one with fewest seats)",
    )
    parser.add_argument("--flash-seats", type=int, default=30, help="local flash-sale seats")
    parser.add_argument(
        "--drain-timeout", type=float, default=60.0, help="wait for payments to settle (60 s)"
    )
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the local API and worker (repeatable)",
    )
    parser.add_argument(
        "locust_args",
        nargs="*",
        help="after --: passed to locust as is, e.g. -- --loglevel DEBUG",
    )
    args = parser.parse_args(argv)
    if args.run_time < 1 or args.users < 1 or args.spawn_rate <= 0 or args.flash_seats < 1:
        parser.error("--run-time ≥ 1, --users ≥ 1, --spawn-rate > 0, --flash-seats ≥ 1")
    if args.database_url and not args.host:
        parser.error("--database-url is only for --host (the local stack has its own)")
    if any("=" not in item for item in args.server_env):
        parser.error("--server-env takes NAME=VALUE")
    return args


def say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def require_service(name: str, url: str, default_port: int) -> None:
    problem = world.unreachable(url, default_port)
    if problem:
        raise SystemExit(f"{name} is {problem}")


# --- the local stack ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    database_url: str | None
    flash_departure_id: int | None


def tripbook_environment(jwt_secret: str, extra: dict[str, str]) -> dict[str, str]:
    """What the local API, worker and beat are told (overrides tests/environment.py)."""
    return {
        **world.production_like(
            jwt_secret=jwt_secret,
            database_url=DATABASE_URL,
            redis_url=REDIS_URL,
            broker_url=BROKER_URL,
            key_prefix=KEY_PREFIX,
        ),
        # Recycling workers mid-run would measure Python start-up, not the app.
        "GUNICORN_MAX_REQUESTS": "0",
        "GUNICORN_MAX_REQUESTS_JITTER": "0",
        **extra,
    }


@contextmanager
def local_stack(args: argparse.Namespace, log_dir: Path) -> Iterator[Target]:
    require_service("PostgreSQL", environment.PG_SERVER, 5432)
    require_service("Redis", REDIS_URL, 6379)
    say(f"database {DATABASE_NAME}: recreating, migrating, seeding")
    asyncio.run(world.recreate_database(DATABASE_URL))
    world.migrate(DATABASE_URL)
    seed = asyncio.run(database.seed(DATABASE_URL, flash_seats=args.flash_seats))
    say(
        f"  {seed.trips} trips, {seed.departures} departures, {seed.seats} seats; flash-sale "
        f"departure {seed.flash_departure_id} with {seed.flash_seats} seats"
    )
    world.clear_redis_keys([REDIS_URL, BROKER_URL], KEY_PREFIX)
    extra = dict(item.split("=", 1) for item in args.server_env)
    with ExitStack() as stack:
        payments = stack.enter_context(run_payment_sandbox(log_dir))
        smtp = stack.enter_context(run_smtp_sink(log_dir))
        env = tripbook_environment(
            secrets.token_urlsafe(48),
            {
                "TRIPBOOK_PAYMENT_GATEWAY_URL": payments.url,
                "TRIPBOOK_SMTP_HOST": smtp.smtp_host,
                "TRIPBOOK_SMTP_PORT": str(smtp.smtp_port),
                **extra,
            },
        )
        stack.enter_context(run_worker(log_dir, env=env, name="load-worker"))
        stack.enter_context(run_beat(log_dir, env=env))
        api = stack.enter_context(run_gunicorn(log_dir, workers=2, env=env))
        say(f"stack up: API {api.url}, payment sandbox {payments.url}, mail {smtp.http_url}")
        try:
            yield Target(api.url, DATABASE_URL, seed.flash_departure_id)
        finally:
            say("stopping the stack")
    world.clear_redis_keys([REDIS_URL, BROKER_URL], KEY_PREFIX)


# --- locust ---------------------------------------------------------------------------------


def run_locust(args: argparse.Namespace, target: Target, out: Path) -> tuple[int, Path]:
    outcomes = out / "outcomes.json"
    env = {**os.environ, "TRIPBOOK_LOAD_OUTCOMES_FILE": str(outcomes), "PYTHONUNBUFFERED": "1"}
    if target.flash_departure_id is not None:
        env["TRIPBOOK_LOAD_FLASH_DEPARTURE"] = str(target.flash_departure_id)
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        target.host,
        "--users",
        str(args.users),
        "--spawn-rate",
        str(args.spawn_rate),
        "--run-time",
        f"{int(args.run_time)}s",
        "--stop-timeout",
        "15",
        "--only-summary",
        "--csv",
        str(out / "load"),
        "--html",
        str(out / "report.html"),
        *args.locust_args,
    ]
    say(f"locust: {args.users} users at {args.spawn_rate}/s for {int(args.run_time)} s")
    completed = subprocess.run(command, env=env, cwd=environment.ROOT, check=False)
    return completed.returncode, outcomes


# --- checks ---------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    passed: bool | None  # None: skipped
    figures: str

    def line(self) -> str:
        verdict = {True: "PASS", False: "FAIL", None: "SKIP"}[self.passed]
        return f"[{verdict}] {self.name}: {self.figures}"


def share(part: int, whole: int) -> str:
    return f"{part / whole:.3%}" if whole else "n/a"


def request_checks(outcomes: dict[str, Any]) -> list[Check]:
    counts: dict[str, int] = outcomes.get("counts", {})
    requests = counts.get("requests", 0)
    http_5xx = counts.get("http_5xx", 0)
    other = counts.get("failures", 0) - http_5xx
    expected = (
        f"expected refusals: {counts.get('expected_409_seats_unavailable', 0)} x 409 "
        f"SEATS_UNAVAILABLE, {counts.get('expected_429', 0)} x 429"
    )
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.get("statuses", {}).items()))
    return [
        Check(
            "unexpected 5xx < 0.1 % of requests",
            requests > 0 and http_5xx < ERROR_BUDGET * requests,
            f"{http_5xx} of {requests} requests ({share(http_5xx, requests)}); {expected}; "
            f"by status {{{statuses}}}",
        ),
        Check(
            "other unexpected failures < 0.1 % of requests",
            requests > 0 and other < ERROR_BUDGET * requests,
            f"{other} (4xx other than expected, connection errors) of {requests} "
            f"({share(other, requests)})",
        ),
    ]


def seat_check(url: str, flash_departure_id: int | None) -> Check:
    report = asyncio.run(database.seat_report(url))
    flash = ""
    if flash_departure_id is not None:
        seats = asyncio.run(database.departure_seats(url, flash_departure_id))
        if seats:
            flash = f"; flash-sale departure {flash_departure_id}: {seats[1]}/{seats[0]} left"
    figures = (
        f"{report.departures} departures, seats_total {report.seats_total} = available "
        f"{report.seats_available} + held/pending/confirmed {report.seats_held}{flash}"
    )
    if report.violations:
        figures += f"; VIOLATIONS (first 5): {report.violations[:5]}"
    return Check("0 oversold seats", report.ok, figures)


def payment_check(url: str, since: datetime, drain_timeout_s: float, client_paid: int) -> Check:
    report = asyncio.run(database.payment_report(url, since, drain_timeout_s=drain_timeout_s))
    by_status = ", ".join(f"{k}: {v}" for k, v in sorted(report.by_status.items())) or "none"
    figures = (
        f"{report.paid} reservations paid ({client_paid} payments accepted by the API as "
        f"seen by locust); final status {{{by_status}}}; drained in {report.waited_s:.1f} s"
    )
    if report.bad:
        figures += f"; NOT CONFIRMED (first 5): {report.bad[:5]}"
    # Payments the API accepted but the database never saw: the wrong --database-url.
    consistent = report.paid > 0 or client_paid == 0
    return Check("every paid reservation ends confirmed", report.ok and consistent, figures)


def judge(
    args: argparse.Namespace, target: Target, outcomes_path: Path, since: datetime | None
) -> list[Check]:
    try:
        outcomes: dict[str, Any] = json.loads(outcomes_path.read_text())
    except (OSError, ValueError):
        outcomes = {}
    checks: list[Check] = []
    if target.database_url and since is not None:
        checks.append(seat_check(target.database_url, outcomes.get("flash_departure_id")))
    else:
        checks.append(Check("0 oversold seats", None, "skipped: --host without --database-url"))
    checks.extend(request_checks(outcomes))
    if target.database_url and since is not None:
        paid = int(outcomes.get("counts", {}).get("paid", 0))
        checks.insert(2, payment_check(target.database_url, since, args.drain_timeout, paid))
    else:
        checks.insert(
            2,
            Check(
                "every paid reservation ends confirmed",
                None,
                "skipped: --host without --database-url",
            ),
        )
    if not outcomes:
        checks.append(Check("locust wrote its outcomes", False, f"{outcomes_path} missing"))
    return checks


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM (a CI timeout) unwinds like Ctrl-C: the stack's processes are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    out = args.results_dir / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    log_dir = out / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        if args.host:
            target = Target(args.host.rstrip("/"), args.database_url, args.flash_departure)
        else:
            target = stack.enter_context(local_stack(args, log_dir))
        since = asyncio.run(database.now(target.database_url)) if target.database_url else None
        exit_code, outcomes_path = run_locust(args, target, out)
        say(f"locust exited with {exit_code}")
        if target.database_url:
            say(f"judging (waiting up to {args.drain_timeout:.0f} s for payments to settle)")
        # Judged while the worker still runs: check 3 waits for it to drain.
        checks = judge(args, target, outcomes_path, since)
    say("")
    say("checks:")
    for check in checks:
        say("  " + check.line())
    say(f"reports: {out}/ (load_stats.csv, load_failures.csv, report.html, logs/)")
    if exit_code not in (0, 1):  # 1: locust saw failures, which the checks above judge
        say(f"locust itself failed (exit code {exit_code})")
        return 1
    return 0 if all(check.passed is not False for check in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
