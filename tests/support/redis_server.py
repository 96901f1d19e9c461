"""A private ``redis-server`` on a port of the test's choosing, without persistence: the
broker a test can stop, restart or wipe without touching the machine's Redis."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from redis import Redis as SyncRedis
from redis.exceptions import ConnectionError as RedisConnectionError


@contextmanager
def redis_server(port: int, db: int = 1) -> Iterator[SyncRedis]:
    """Yields a client of database ``db`` once the server answers; stops it on exit."""
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
    )
    redis = SyncRedis(port=port, db=db, socket_connect_timeout=1)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.ping()
                break
            except RedisConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # poll interval
        yield redis
    finally:
        redis.close()
        process.terminate()
        process.wait()
