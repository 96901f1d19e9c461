"""/metrics adds up across gunicorn workers (Prometheus multiprocess mode)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from tests.support.servers import run_gunicorn

WORKERS = 2
REQUESTS = 40  # at least this many; more while a worker has served none yet
MAX_REQUESTS = 2000  # the kernel spreads new connections over the workers long before
ROUTE = "/v1/trips/{trip_id}"


def counter(exposition: str, name: str, labels: str) -> float:
    match = re.search(rf"^{name}\{{{labels}\}} ([0-9.e+]+)$", exposition, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def served_by_pid(metrics_dir: Path) -> dict[int, float]:
    """The 404s of ``ROUTE`` each process counted, read from its own multiprocess file."""
    served: dict[int, float] = {}
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.removeprefix("counter_"))
        served[pid] = sum(
            sample.value
            for metric in MultiProcessCollector.merge([str(path)])  # type: ignore[no-untyped-call]
            for sample in metric.samples
            if sample.name == "tripbook_http_requests_total"
            and sample.labels == {"method": "GET", "route": ROUTE, "status": "404"}
        )
    return served


@pytest.mark.slow
def test_metrics_count_requests_served_by_every_worker(log_dir: Path) -> None:
    metrics_dir = log_dir / "metrics"
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with run_gunicorn(log_dir, workers=WORKERS, env=env) as server:
        workers = set(server.worker_pids())
        sent = 0
        while sent < REQUESTS or sum(n > 0 for n in served_by_pid(metrics_dir).values()) < WORKERS:
            assert sent < MAX_REQUESTS, f"one worker took all: {served_by_pid(metrics_dir)}"
            # A fresh connection each time, so the kernel spreads them over both workers.
            with httpx.Client(base_url=server.url) as client:
                response = client.get("/v1/trips/424242", headers={"Connection": "close"})
                assert response.status_code == 404
            sent += 1
        with httpx.Client(base_url=server.url) as client:
            exposition = client.get("/metrics").text
        served = served_by_pid(metrics_dir)
        still_running = set(server.worker_pids())

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
    # Both workers served some of the requests, each counted in its own file...
    assert len(workers) == WORKERS
    assert still_running == workers  # none restarted and took its samples away
    assert set(served) == workers
    assert all(n > 0 for n in served.values()), served
    assert sum(served.values()) == sent
    # ...and /metrics, answered by one of them, sums them all, not per pid.
    assert requests == sent
    assert latency_count == sent
    assert set(re.findall(r'pid="(\d+)"', exposition)) == set()
