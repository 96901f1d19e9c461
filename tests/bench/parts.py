"""Where a request's CPU goes: tripbook's ASGI app called in this process, parts taken out
in turn (``python -m tests.bench.parts``).

``run.py`` measures how fast over HTTP. This says why, without HTTP, wrk, or other
processes taking turns on the cores: the app is called directly on uvloop with the
settings the bench servers get (``config.World``), and the figure is this process's CPU
time per request (the relay's publishing thread included), the median of ``--repeats``.

- ``healthz``: FastAPI with no middleware (``apps/fastapi_plain.py``), tripbook's full
  stack, and the full stack without each of its middleware in turn.
- ``holds``: seat holds on the bench database's 1,000 departures, ``--concurrency`` at a
  time against the real PostgreSQL and Redis: the whole request, then with the outbox
  relay's publish, the trip cache invalidation or the rate limiter replaced by a no-op.
  The tables are reset before every measurement, and the seat invariant checked after.

Parts are removed here only, to measure them; nothing in ``src/`` can turn them off.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager as ContextManager
from contextlib import nullcontext, redirect_stdout
from pathlib import Path
from typing import Any
from unittest import mock

import uvloop
from fastapi import FastAPI
from starlette.types import ASGIApp, Message

from tests.bench import config, database
from tests.bench.apps.fastapi_plain import app as fastapi_plain
from tests.bench.run import exclusive_run, require_service, say
from tripbook.core import ratelimit
from tripbook.core.gc_tuning import tune_garbage_collector
from tripbook.main import create_app
from tripbook.reservations import router as reservations_router
from tripbook.settings import Settings
from tripbook.trips import cache

WHAT = ("healthz", "holds")
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
TRIPBOOK_MIDDLEWARE = (
    "CorrelationIdAliasMiddleware",
    "CorrelationIdMiddleware",
    "AccessLogMiddleware",
    "SecurityHeadersMiddleware",
    "BodySizeLimitMiddleware",
)
# What a hold does beside its statement, each replaced by a no-op in one measurement.
HOLD_PARTS: dict[str, tuple[object, str]] = {
    "outbox relay publish": (reservations_router, "publish_committed"),
    "trip cache invalidation": (cache, "invalidate"),
    "rate limiter": (ratelimit.RateLimiter, "check"),
}
Samples = dict[str, list[float]]  # variant → CPU µs per request, one per repeat
HOLD_BODY = (  # the body of tests/bench/lua/holds.lua
    '{"departure_id":%d,"seats":2,'
    '"passengers":[{"full_name":"Ada Lovelace"},{"full_name":"Alan Turing"}]}'
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.parts", description=__doc__)
    parser.add_argument("what", nargs="*", help="healthz, holds (default: both)")
    parser.add_argument("--repeats", type=int, default=5, help="measurements per variant")
    parser.add_argument("--healthz-requests", type=int, default=5000, help="per measurement")
    parser.add_argument("--holds", type=int, default=2000, help="per measurement")
    parser.add_argument("--concurrency", type=int, default=16, help="holds in flight")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.healthz_requests < 1 or args.holds < args.concurrency:
        parser.error("--repeats ≥ 1, --healthz-requests ≥ 1, --holds ≥ --concurrency")
    args.what = args.what or list(WHAT)
    if unknown := set(args.what) - set(WHAT):
        parser.error(f"unknown: {', '.join(sorted(unknown))}; choose from {', '.join(WHAT)}")
    return args


def request_scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"user-agent", b"bench"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def call(app: ASGIApp, scope: dict[str, Any], body: bytes = b"") -> int:
    """One request through ``app``; its status."""
    statuses: list[int] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app(scope, receive, send)
    return statuses[0]


async def cpu_per_call(
    calls: int, concurrency: int, one: Callable[[], Awaitable[int]], ok: int
) -> float:
    """CPU µs per call of ``one``, ``concurrency`` in flight; every status must be ``ok``."""

    async def worker(count: int) -> None:
        for _ in range(count):
            status = await one()
            if status != ok:
                raise RuntimeError(f"status {status}, expected {ok}")

    started = time.process_time()
    await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
    return (time.process_time() - started) / (calls // concurrency * concurrency) * 1e6


def without_middleware(settings: Settings, *names: str) -> FastAPI:
    app = create_app(settings)
    # Starlette builds the middleware stack on the first call, from this list.
    app.user_middleware = [
        entry for entry in app.user_middleware if getattr(entry.cls, "__name__", "") not in names
    ]
    return app


async def measure_healthz(settings: Settings, args: argparse.Namespace) -> Samples:
    variants: dict[str, ASGIApp] = {
        "FastAPI, no middleware": fastapi_plain,
        "tripbook, full stack": create_app(settings),
        **{
            f"tripbook without {name}": without_middleware(settings, name)
            for name in TRIPBOOK_MIDDLEWARE
        },
        "tripbook without any of its middleware": without_middleware(
            settings, *TRIPBOOK_MIDDLEWARE
        ),
    }
    samples: Samples = {name: [] for name in variants}
    for app in variants.values():
        await cpu_per_call(500, 1, healthz_of(app), 200)  # caches, the route's first build
    for _ in range(args.repeats):  # interleaved, so drift falls on every variant alike
        for name, app in variants.items():
            samples[name].append(await cpu_per_call(args.healthz_requests, 1, healthz_of(app), 200))
    return samples


def healthz_of(app: ASGIApp) -> Callable[[], Awaitable[int]]:
    def healthz() -> Awaitable[int]:
        # A new scope each time: the app writes into it (route, state, headers).
        return call(app, request_scope("GET", "/healthz", [(b"accept", b"*/*")]))

    return healthz


def replaced_by_no_op(owner: object, attribute: str) -> Callable[[], ContextManager[Any]]:
    async def nothing(*_: object, **__: object) -> None:
        return None

    return lambda: mock.patch.object(owner, attribute, nothing)


async def measure_holds(
    settings: Settings, seed: database.Seed, args: argparse.Namespace
) -> Samples:
    app = create_app(settings)
    rng = random.Random(104729)
    authorizations = [f"Bearer {token}".encode() for token in seed.tokens]

    async def hold() -> int:
        body = (HOLD_BODY % rng.choice(seed.spread_departure_ids)).encode()
        headers = [
            (b"authorization", rng.choice(authorizations)),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        return await call(app, request_scope("POST", "/v1/reservations", headers), body)

    variants: dict[str, Callable[[], ContextManager[Any]]] = {
        "whole request": nullcontext,
        **{f"without {part}": replaced_by_no_op(*target) for part, target in HOLD_PARTS.items()},
    }
    samples: Samples = {label: [] for label in variants}
    async with app.router.lifespan_context(app):
        await cpu_per_call(args.concurrency * 20, args.concurrency, hold, 201)  # pools, caches
        for _ in range(args.repeats):
            for label, variant in variants.items():
                await database.reset_holds()
                with variant():
                    samples[label].append(
                        await cpu_per_call(args.holds, args.concurrency, hold, 201)
                    )
                invariant = await database.check_invariant()
                if not invariant.holds:
                    raise RuntimeError(f"seat invariant broken: {invariant.describe()}")
    return samples


def table(
    title: str,
    samples: Samples,
    baseline: str,
    ratio: str,
    of: Callable[[float, float], float],
) -> str:
    """Markdown: each variant's median CPU per request and range, the difference of the
    medians to ``baseline``, and ``of(baseline, variant)`` in the column named ``ratio``."""
    medians = {name: statistics.median(values) for name, values in samples.items()}
    base = medians[baseline]
    lines = [
        f"### {title}",
        "",
        f"| variant | CPU µs/request | range | difference | {ratio} |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, value in medians.items():
        low, high = min(samples[name]), max(samples[name])
        lines.append(
            f"| {name} | {value:,.1f} | {low:,.1f} to {high:,.1f} | {value - base:+,.1f} "
            f"| {of(base, value):.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    if METRICS_DIR_VARIABLE not in os.environ:
        # The servers count in prometheus_client's multiprocess mode, which it picks on
        # import: start again with it set, as gunicorn.conf.py does for the servers.
        os.environ[METRICS_DIR_VARIABLE] = tempfile.mkdtemp(prefix="tripbook-parts-")
        os.execv(  # noqa: S606  # this same command, nothing from outside
            sys.executable, [sys.executable, "-m", "tests.bench.parts", *(argv or sys.argv[1:])]
        )
    args = parse_args(argv)
    require_service("PostgreSQL", config.PG_SERVER, 5432)
    require_service("Redis", config.REDIS_URL, 6379)
    with exclusive_run(), tempfile.TemporaryDirectory(prefix="tripbook-parts-") as workdir:
        report = measure(args, Path(workdir))
    if Path(os.environ[METRICS_DIR_VARIABLE]).name.startswith("tripbook-parts-"):
        shutil.rmtree(os.environ[METRICS_DIR_VARIABLE], ignore_errors=True)
    sys.stdout.write(report + "\n")
    return 0


def measure(args: argparse.Namespace, workdir: Path) -> str:
    world = config.World()
    os.environ.update(world.tripbook_environment())
    settings = Settings()
    seed = None
    if "holds" in args.what:
        say(f"database {config.DATABASE_NAME}: recreating, migrating, seeding")
        seed = database.prepare(world.jwt_secret)
    report = [f"## Where a request's CPU goes (in one process, medians of {args.repeats})"]
    database.clear_redis_keys()
    # The access lines (and the collector's line) go to a file, as the servers' do.
    with (workdir / "app.log").open("w") as log, redirect_stdout(log):
        try:
            tune_garbage_collector(settings.gc_gen0_threshold)  # as each server worker does
            if "healthz" in args.what:
                say("GET /healthz")
                report.append(
                    table(
                        "GET /healthz",
                        uvloop.run(measure_healthz(settings, args)),
                        "FastAPI, no middleware",
                        "FastAPI ÷ this (the bench's 3/2)",
                        lambda base, value: base / value,
                    )
                )
            if seed is not None:
                say("POST /v1/reservations")
                report.append(
                    table(
                        f"POST /v1/reservations, spread, {args.concurrency} in flight",
                        uvloop.run(measure_holds(settings, seed, args)),
                        "whole request",
                        "share of the whole request",
                        lambda base, value: (base - value) / base,
                    )
                )
        finally:
            database.clear_redis_keys()
    return "\n\n".join(report)


if __name__ == "__main__":
    sys.exit(main())
