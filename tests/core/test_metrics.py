"""/metrics adds up across gunicorn workers (Prometheus multiprocess mode)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.support.servers import run_gunicorn

REQUESTS = 40


def counter(exposition: str, name: str, labels: str) -> float:
    match = re.search(rf"^{name}\{{{labels}\}} ([0-9.e+]+)$", exposition, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.mark.slow
def test_metrics_count_requests_served_by_every_worker(log_dir: Path) -> None:
    with run_gunicorn(log_dir, workers=2) as server:
        pids = set()
        for _ in range(REQUESTS):
            # A fresh connection each time, so the kernel spreads them over both workers.
            with httpx.Client(base_url=server.url) as client:
                response = client.get("/v1/trips/424242", headers={"Connection": "close"})
                assert response.status_code == 404
        with httpx.Client(base_url=server.url) as client:
            exposition = client.get("/metrics").text
        pids = set(re.findall(r'pid="(\d+)"', exposition))

    requests = counter(
        exposition,
        "tripbook_http_requests_total",
        'method="GET",route="/v1/trips/\\{trip_id\\}",status="404"',
    )
    latency_count = counter(
        exposition,
        "tripbook_http_request_duration_seconds_count",
        'method="GET",route="/v1/trips/\\{trip_id\\}"',
    )
    assert requests == REQUESTS
    assert latency_count == REQUESTS
    assert pids == set()  # summed across processes, not reported per pid
