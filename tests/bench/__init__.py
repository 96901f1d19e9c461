"""Measured performance of tripbook: ``make bench`` (``python -m tests.bench.run``).

Not part of ``make test``: no module here is named ``test_*``, and this package imports
nothing, so pytest's collection never pays for it.

What one run does
-----------------
1. Finds ``wrk`` (installs Debian's package when it can, else stops with a clear message).
2. Recreates its own database ``tripbook_bench`` (migrated with Alembic, as
   ``tests/conftest.py`` does), seeds a few hundred accounts sharing one argon2 hash,
   200 trips of 5 departures each (1,000 departures with 1,000,000 seats each) and one hot
   departure with 100,000,000 seats; mints JWTs with ``create_access_token``. Redis keys
   live under ``tripbook-bench:`` and are deleted at the start and the end.
3. Runs the scenarios interleaved (run 1 of each, then run 2 of each, ...; ``--order
   grouped`` runs them one after the other), each run on a fresh gunicorn with 2 workers
   and ``deploy/gunicorn.conf.py`` on 127.0.0.1, after a warm-up: wrk, 64 connections,
   10 s, 3 runs by default. Hold runs start from empty reservations with every seat free
   and end with the seat invariant checked. Every run also records the CPU seconds of the
   workers, of the bench database's PostgreSQL backends and of every other process, so
   CPU per request stays comparable when other work shares the machine.
4. Prints the Markdown report (machine, medians, every run, ratios against the targets,
   the invariant) and writes it with a JSON twin to ``tests/bench/results/`` (git-ignored).
   Exits 1 when a scenario failed or the invariant broke. One run at a time per machine
   (a lock in the temp directory): a second would drop the first one's database.

Scenarios: ``bare`` (pure ASGI floor, ``apps/bare.py``), ``fastapi_plain`` (FastAPI, no
middleware, ``apps/fastapi_plain.py``), ``healthz`` (tripbook's full stack),
``trip_cached`` / ``trip_uncached`` (``GET /v1/trips/{id}``), ``holds_spread`` /
``holds_hot`` (``POST /v1/reservations``), ``naive_spread`` / ``naive_hot`` (the textbook
ORM hold in ``naive/app.py``, same tables and JWTs).

Commands
--------
- ``make bench``: every scenario, 3 runs of 10 s each (about 9 minutes).
- ``.venv/bin/python -m tests.bench.run --duration 2 --runs 1 --connections 8 --scenarios
  healthz``: a smoke check in well under a minute.
- ``--profile``: one extra, unreported run per scenario with ``py-spy record`` attached to
  both workers and ``pg_stat_activity`` sampled; summaries go into the report, the raw
  collapsed stacks to the results directory. Needs ``.venv/bin/pip install py-spy``
  (deliberately not a project dependency).
- ``make bench-parts`` (``python -m tests.bench.parts``, about a minute): why, not how
  fast. The app is called in one process, no HTTP, with each middleware, and each part of
  a hold beside its statement, taken out in turn; CPU per request, medians of 5.
- ``--server-env NAME=VALUE`` (repeatable) gives every server more environment: try a
  setting, or measure a patched copy of the package with ``PYTHONPATH=/tmp/copy/src``.

Settings the servers get (and the report repeats): ``TRIPBOOK_ENV=production`` with a
random JWT secret, JSON logs at INFO to a file, rate limits raised to 100,000,000/minute
(still counted in Redis on every request), ``TRIPBOOK_TRUSTED_PROXIES=127.0.0.1/32`` so
trip reads spread over many ``X-Forwarded-For`` clients, and ``GUNICORN_MAX_REQUESTS=0``:
at these rates the production value (10,000) would recycle each worker every few seconds
and measure Python start-up instead of the app.

On a 2-core machine wrk, PostgreSQL, Redis and gunicorn share the cores; numbers compare
apps on one machine, they are not capacity figures. wrk is closed-loop (no coordinated
omission correction): p99 under saturation is queueing time as much as service time.
"""
