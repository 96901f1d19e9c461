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
   0.1 % of requests;
5. the ledger balances: once no charge or refund is ``pending`` or ``unknown`` (a bounded
   wait), ``tripbook.payments.ledger.report`` finds no mismatch between the whole load
   database and the payment sandbox's records. The sandbox's figures (charges and refunds
   applied, faults injected) and the database's final payment states are printed with it.

The drain (checks 3 and 5 together) waits at most ``--drain-timeout`` seconds.

``--payment-chaos``: the payment sandbox misbehaves while locust runs (``chaos.py``). The
worker and beat get short money timings (gateway timeout 1 s, reconciliation of what was
untouched for 3 s every 2 s, one task retry after a 0.5 s backoff, so that some payments
reach reconciliation; any ``--server-env`` overrides them, e.g.
``TRIPBOOK_PAYMENT_MAX_RETRIES=3``), and a thread drives the sandbox in phases over the first
80 % of the run: calm, latency 1.5 s (above the gateway timeout), calm, 30 % random 503s
before or after applying (seeded by ``--chaos-seed``), calm, both at once (a disturbed
phase lasts twice a calm one), then calm to the end, each phase change logged with its
time (and in ``logs/chaos.log``). Locust is told (``TRIPBOOK_LOAD_CHAOS=1``)
that a booker giving up polling on a still pending payment is an expected slow settlement,
not a failure. Check 3 then waits until none of the run's charges and refunds is
``pending`` or ``unknown`` either, and also accepts ``payment_failed`` or ``expired``
where every charge of the reservation definitely failed (never after a mere timeout).
Check 5 must hold as always. Local stack only.

After the checks, figures from the local services' logs are printed for information: the
worker's gateway calls by outcome, retries, payments handed to reconciliation and what it
settled, and every warning or error logged.

The exit code is 0 only when every check passed. With ``--host`` nothing is started;
checks 1 and 3 need ``--database-url`` (that host's database) and are skipped, saying
so, without it; check 5 (it lists the local sandbox's records) is skipped.
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
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests import environment
from tests.load import chaos, database, service_logs
from tests.support import world
from tests.support.sandboxes import PaymentSandbox, run_payment_sandbox, run_smtp_sink
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
MISMATCH_LINES_SHOWN = 20
# --payment-chaos: money timings short enough that everything settles within the drain
# (the reconciliation grace must exceed twice the gateway timeout; settings check it).
# One task retry only: the load stack's worker has a single child, so during a slow phase
# payments queue behind one another and a charge seldom spends three retries before the
# phase ends; with one, some are handed to reconciliation every run, which is then tested.
CHAOS_TIMINGS = {
    "TRIPBOOK_PAYMENT_GATEWAY_TIMEOUT_S": "1",
    "TRIPBOOK_PAYMENT_RECONCILE_AFTER_S": "3",
    "TRIPBOOK_PAYMENT_RECONCILE_INTERVAL_S": "2",
    "TRIPBOOK_TASK_RETRY_BACKOFF_S": "0.5",
    "TRIPBOOK_TASK_RETRY_BACKOFF_MAX_S": "4",
    "TRIPBOOK_PAYMENT_MAX_RETRIES": "1",
}


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
        "--payment-chaos",
        action="store_true",
        help="make the payment sandbox slow and flaky in phases during the run, with short "
        "money timings for the worker and beat; check 3 waits for every charge and refund "
        "to settle (local stack only; see above)",
    )
    parser.add_argument(
        "--chaos-seed",
        type=int,
        help="with --payment-chaos: seed of the injected 503s (default: random, printed)",
    )
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
    if args.payment_chaos and args.host:
        parser.error("--payment-chaos drives the local payment sandbox: not with --host")
    if args.chaos_seed is not None and not args.payment_chaos:
        parser.error("--chaos-seed is only for --payment-chaos")
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
    payment_sandbox: PaymentSandbox | None = None  # the local stack's


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
    if args.payment_chaos:
        extra = {**CHAOS_TIMINGS, **extra}
        timings = ", ".join(f"{k.removeprefix('TRIPBOOK_')}={v}" for k, v in CHAOS_TIMINGS.items())
        say(f"payment chaos: worker and beat run with {timings} (--server-env overrides)")
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
            yield Target(api.url, DATABASE_URL, seed.flash_departure_id, payments)
        finally:
            say("stopping the stack")
    world.clear_redis_keys([REDIS_URL, BROKER_URL], KEY_PREFIX)


# --- locust ---------------------------------------------------------------------------------


def run_locust(args: argparse.Namespace, target: Target, out: Path) -> tuple[int, Path]:
    outcomes = out / "outcomes.json"
    env = {**os.environ, "TRIPBOOK_LOAD_OUTCOMES_FILE": str(outcomes), "PYTHONUNBUFFERED": "1"}
    if args.payment_chaos:
        env["TRIPBOOK_LOAD_CHAOS"] = "1"
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


def start_chaos(
    args: argparse.Namespace, sandbox: PaymentSandbox, log_dir: Path
) -> chaos.PaymentChaos:
    """The chaos thread for this run (entered as a context manager: stopped on exit)."""
    seed = args.chaos_seed if args.chaos_seed is not None else secrets.randbelow(2**31)
    phases = chaos.schedule(args.run_time)
    plan = ", ".join(f"{phase.name} @{phase.start_s:.0f}s" for phase in phases)
    say(f"payment chaos (seed {seed}): {plan}")
    return chaos.PaymentChaos(sandbox, phases, seed=seed, say=say, log_path=log_dir / "chaos.log")


# --- checks ---------------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    passed: bool | None  # None: skipped
    figures: str
    details: list[str] = field(default_factory=list)  # printed under the line, indented

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


PAYMENT_CHECK = "every paid reservation ends confirmed"
PAYMENT_CHECK_CHAOS = (
    "every paid reservation ends confirmed (payment_failed/expired only after a definite "
    "decline), no charge or refund left pending/unknown"
)
LEDGER_CHECK = "ledger balanced"


def payment_check(
    url: str,
    since: datetime,
    drain_timeout_s: float,
    outcomes: dict[str, Any],
    *,
    chaos: bool,
) -> Check:
    report = asyncio.run(
        database.payment_report(url, since, drain_timeout_s=drain_timeout_s, chaos=chaos)
    )
    counts = outcomes.get("counts", {})
    client_paid = int(counts.get("paid", 0))
    by_status = ", ".join(f"{k}: {v}" for k, v in sorted(report.by_status.items())) or "none"
    figures = (
        f"{report.paid} reservations paid ({client_paid} payments accepted by the API as "
        f"seen by locust); final status {{{by_status}}}; drained in {report.waited_s:.1f} s"
    )
    if chaos:
        figures += (
            f"; {report.open_payments} charges/refunds still pending or unknown; "
            f"{report.failed_charges} ended after a definite decline; "
            f"{counts.get('expected_slow_settlement', 0)} bookers stopped polling while "
            "still pending (expected under chaos)"
        )
    if report.bad:
        figures += f"; NOT CONFIRMED (first 5): {report.bad[:5]}"
    # Payments the API accepted but the database never saw: the wrong --database-url.
    consistent = report.paid > 0 or client_paid == 0
    name = PAYMENT_CHECK_CHAOS if chaos else PAYMENT_CHECK
    return Check(name, report.ok and consistent, figures)


def sandbox_figures(sandbox: PaymentSandbox) -> str:
    """What the sandbox applied and how often it was asked, and the faults it injected."""
    try:
        stats = sandbox.stats()
    except Exception as exc:  # reported, not fatal: the ledger check has its own answer
        return f"sandbox stats unavailable ({exc!r})"

    def summary(kind: str) -> str:
        records: dict[str, dict[str, int]] = stats.get(kind, {})
        applied = sum(record["applied"] for record in records.values())
        attempts = sum(record["attempts"] for record in records.values())
        most = max((record["applied"] for record in records.values()), default=0)
        return (
            f"{applied} {kind} applied ({len(records)} keys, {attempts} requests, "
            f"at most {most} applied per key)"
        )

    faults = stats.get("faults_injected", {})
    return (
        f"sandbox: {summary('charges')}, {summary('refunds')}; faults injected: "
        f"{faults.get('before', 0)} before applying, {faults.get('after', 0)} after"
    )


def ledger_check(url: str, sandbox: PaymentSandbox, settle_timeout_s: float) -> Check:
    """Check 5: once nothing is open (bounded wait), the ledger report must be empty."""
    still_open, waited_s = asyncio.run(
        database.wait_for_settled_payments(url, timeout_s=settle_timeout_s)
    )
    states = asyncio.run(database.payment_states(url))
    final = (
        "; ".join(
            f"{kind} {{{', '.join(f'{k}: {v}' for k, v in by_status.items())}}}"
            for kind, by_status in states.items()
        )
        or "no payments"
    )
    try:
        mismatches = asyncio.run(database.ledger_report(url, sandbox.url))
    except Exception as exc:
        mismatches = [f"the ledger report itself failed: {exc!r}"]
    figures = (
        f"{len(mismatches)} mismatches (unscoped: the whole {DATABASE_NAME} database against "
        f"the sandbox; {still_open} charges/refunds still open after {waited_s:.1f} s); "
        f"database: {final}; {sandbox_figures(sandbox)}"
    )
    details = [f"mismatch: {line}" for line in mismatches[:MISMATCH_LINES_SHOWN]]
    if len(mismatches) > MISMATCH_LINES_SHOWN:
        details.append(f"... and {len(mismatches) - MISMATCH_LINES_SHOWN} more")
    return Check(LEDGER_CHECK, not mismatches, figures, details)


def judge(
    args: argparse.Namespace, target: Target, outcomes_path: Path, since: datetime | None
) -> list[Check]:
    try:
        outcomes: dict[str, Any] = json.loads(outcomes_path.read_text())
    except (OSError, ValueError):
        outcomes = {}
    # One drain budget for checks 3 and 5 together.
    deadline = time.monotonic() + args.drain_timeout

    def remaining() -> float:
        return max(0.0, deadline - time.monotonic())

    skipped = "skipped: --host without --database-url"
    payment_name = PAYMENT_CHECK_CHAOS if args.payment_chaos else PAYMENT_CHECK
    if target.database_url and since is not None:
        seats = seat_check(target.database_url, outcomes.get("flash_departure_id"))
        payments = payment_check(
            target.database_url, since, remaining(), outcomes, chaos=args.payment_chaos
        )
    else:
        seats = Check("0 oversold seats", None, skipped)
        payments = Check(payment_name, None, skipped)
    if target.database_url and target.payment_sandbox is not None:
        ledger = ledger_check(target.database_url, target.payment_sandbox, remaining())
    else:
        ledger = Check(LEDGER_CHECK, None, "skipped: --host (the gateway is not the local one)")
    http_5xx, other = request_checks(outcomes)
    checks = [seats, http_5xx, payments, other, ledger]
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
    started = time.monotonic()
    with ExitStack() as stack:
        if args.host:
            target = Target(args.host.rstrip("/"), args.database_url, args.flash_departure)
        else:
            target = stack.enter_context(local_stack(args, log_dir))
        since = asyncio.run(database.now(target.database_url)) if target.database_url else None
        with ExitStack() as during_locust:
            if args.payment_chaos and target.payment_sandbox is not None:
                during_locust.enter_context(start_chaos(args, target.payment_sandbox, log_dir))
            exit_code, outcomes_path = run_locust(args, target, out)
        say(f"locust exited with {exit_code}")
        if target.database_url:
            say(f"judging (waiting up to {args.drain_timeout:.0f} s for payments to settle)")
        # Judged while the worker still runs: checks 3 and 5 wait for it to drain.
        checks = judge(args, target, outcomes_path, since)
    say("")
    say("checks:")
    for check in checks:
        say("  " + check.line())
        for detail in check.details:
            say("      " + detail)
    if not args.host:
        say("")
        say("the services' logs (informational):")
        for line in service_logs.money_figures(log_dir):
            say("  " + line)
        warnings = service_logs.noise(log_dir)
        say(f"  warnings and errors: {len(warnings)} kinds" if warnings else "  no warning/error")
        for line in warnings[:MISMATCH_LINES_SHOWN]:
            say("    " + line)
    say(f"reports: {out}/ (load_stats.csv, load_failures.csv, report.html, logs/)")
    say(f"wall time: {time.monotonic() - started:.0f} s")
    if exit_code not in (0, 1):  # 1: locust saw failures, which the checks above judge
        say(f"locust itself failed (exit code {exit_code})")
        return 1
    return 0 if all(check.passed is not False for check in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
