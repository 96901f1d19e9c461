"""Where the test-suite's own services live: a database and Redis key space per checkout.

Imported by conftest.py before anything reads settings, and by the helpers that start
gunicorn and Celery, so every process of one test run shares the same isolated world.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Several runs side by side (clones, helpers) each get their own database and key space.
_TAG = (
    os.environ.get("TRIPBOOK_TEST_TAG")
    or hashlib.sha1(str(ROOT).encode(), usedforsecurity=False).hexdigest()[:8]
)

PG_SERVER = os.environ.get("TRIPBOOK_TEST_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432")
REDIS_SERVER = os.environ.get("TRIPBOOK_TEST_REDIS", "redis://127.0.0.1:6379")
DATABASE_NAME = f"tripbook_test_{_TAG}"
DATABASE_URL = f"{PG_SERVER}/{DATABASE_NAME}"
REDIS_URL = f"{REDIS_SERVER}/0"
BROKER_URL = f"{REDIS_SERVER}/1"
KEY_PREFIX = f"tripbook-test-{_TAG}:"


def dsn(url: str) -> str:
    """asyncpg's DSN for one of tripbook's URLs, which name SQLAlchemy's driver."""
    return url.replace("+asyncpg://", "://", 1)


PG_SERVER_DSN = dsn(PG_SERVER)  # no database: add "/postgres" for an admin connection
DATABASE_DSN = dsn(DATABASE_URL)


def own_key_prefix(label: str) -> str:
    """A Redis key space of the caller's own, inside the run's: nothing else reads or writes
    it (counters, cache, queues), and the run's clean-up still clears it."""
    return f"{KEY_PREFIX}{label}-{uuid.uuid4().hex[:8]}:"


ENVIRONMENT = {
    "TRIPBOOK_ENV": "test",
    "TRIPBOOK_DATABASE_URL": DATABASE_URL,
    "TRIPBOOK_REDIS_URL": REDIS_URL,
    "TRIPBOOK_BROKER_URL": BROKER_URL,
    "TRIPBOOK_REDIS_KEY_PREFIX": KEY_PREFIX,
    "TRIPBOOK_LOG_FORMAT": "json",
    # Tests exercise limits on purpose with their own app; elsewhere they stay out of the way.
    "TRIPBOOK_RATE_LIMIT_AUTH": "100000/minute",
    "TRIPBOOK_RATE_LIMIT_RESERVATIONS": "100000/minute",
    "TRIPBOOK_RATE_LIMIT_DEFAULT": "100000/minute",
}


def apply() -> None:
    os.environ.update(ENVIRONMENT)
