"""The bench's own world: its database, Redis key space, and what its servers are told."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from tests import environment
from tests.support import world

ROOT = environment.ROOT
BENCH_DIR = Path(__file__).resolve().parent
LUA_DIR = BENCH_DIR / "lua"
RESULTS_DIR = BENCH_DIR / "results"

PG_SERVER = environment.PG_SERVER
DATABASE_NAME = "tripbook_bench"
DATABASE_URL = f"{PG_SERVER}/{DATABASE_NAME}"
REDIS_URL = f"{environment.REDIS_SERVER}/0"
BROKER_URL = f"{environment.REDIS_SERVER}/1"
KEY_PREFIX = "tripbook-bench:"
RATE_LIMIT = world.UNLIMITED
WORKERS = 2

# Inherited knobs would make two runs on two shells incomparable.
_INHERITED_PREFIXES = ("TRIPBOOK_", "GUNICORN_", "PROMETHEUS_MULTIPROC_DIR")


@dataclass(frozen=True, slots=True)
class World:
    """One bench run's secrets and settings, shared by the harness and every server."""

    jwt_secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))

    def tripbook_environment(self) -> dict[str, str]:
        return {
            **world.production_like(
                jwt_secret=self.jwt_secret,
                database_url=DATABASE_URL,
                redis_url=REDIS_URL,
                broker_url=BROKER_URL,
                key_prefix=KEY_PREFIX,
            ),
            # wrk stands in for a load balancer: trip reads carry many X-Forwarded-For
            # clients, so per-IP limiter keys spread as they would in production.
            "TRIPBOOK_TRUSTED_PROXIES": "127.0.0.1/32",
        }

    def server_environment(self, overrides: dict[str, str], metrics_dir: Path) -> dict[str, str]:
        inherited = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(_INHERITED_PREFIXES)
        }
        return {
            **inherited,
            **self.tripbook_environment(),
            "GUNICORN_WORKERS": str(WORKERS),
            # Recycling every 10,000 requests would restart each worker every few seconds
            # at these rates, measuring Python start-up instead of the app.
            "GUNICORN_MAX_REQUESTS": "0",
            "GUNICORN_MAX_REQUESTS_JITTER": "0",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "PYTHONUNBUFFERED": "1",
            **overrides,
        }
