"""``python -m tripbook.core.preflight``: one clear line when PostgreSQL or Redis is missing."""

from __future__ import annotations

import socket
import sys
from urllib.parse import urlsplit

from tripbook.settings import get_settings

HINTS = {
    "PostgreSQL": "start it (e.g. `pg_ctlcluster 15 main start`) or set TRIPBOOK_DATABASE_URL",
    "Redis": "start it (e.g. `redis-server --daemonize yes`) or set TRIPBOOK_REDIS_URL",
}


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def main() -> int:
    settings = get_settings()
    missing = [
        (name, url)
        for name, url, port in (
            ("PostgreSQL", settings.database_url, 5432),
            ("Redis", settings.redis_url, 6379),
        )
        if not reachable(url, port)
    ]
    for name, url in missing:
        host = urlsplit(url).netloc.rpartition("@")[2]
        print(f"tripbook: {name} is not answering at {host}: {HINTS[name]}", file=sys.stderr)  # noqa: T201
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
