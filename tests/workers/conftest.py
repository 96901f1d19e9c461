"""One payment sandbox and SMTP sink for the package, one real worker per module.

The worker runs with the test environment, the sandbox and sink addresses, and short
retry backoffs; the in-process API (``client``) publishes to the same broker key space.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from celery import Celery
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.booking import Booking
from tests.support.factories import Factories
from tests.support.sandboxes import (
    PaymentSandbox,
    SmtpSink,
    free_port,
    run_payment_sandbox,
    run_smtp_sink,
)
from tests.support.workers import CeleryProcess, run_worker
from tripbook.core.relay import create_client
from tripbook.settings import Settings


@pytest.fixture(scope="package")
def jobs_log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jobs")


@pytest.fixture(scope="package")
def payment_sandbox(jobs_log_dir: Path) -> Iterator[PaymentSandbox]:
    with run_payment_sandbox(jobs_log_dir, timeout_delay_s=5) as sandbox:
        yield sandbox


@pytest.fixture(scope="package")
def smtp_sink(jobs_log_dir: Path) -> Iterator[SmtpSink]:
    with run_smtp_sink(jobs_log_dir) as sink:
        yield sink


@pytest.fixture(scope="package")
def worker_env(payment_sandbox: PaymentSandbox, smtp_sink: SmtpSink) -> dict[str, str]:
    return {
        "TRIPBOOK_PAYMENT_GATEWAY_URL": payment_sandbox.url,
        "TRIPBOOK_SMTP_HOST": smtp_sink.smtp_host,
        "TRIPBOOK_SMTP_PORT": str(smtp_sink.smtp_port),
        # Retries in tenths of a second, not minutes.
        "TRIPBOOK_TASK_RETRY_BACKOFF_S": "0.1",
        "TRIPBOOK_TASK_RETRY_BACKOFF_MAX_S": "1",
        "TRIPBOOK_PAYMENT_MAX_RETRIES": "2",
        "TRIPBOOK_OUTBOX_SWEEP_GRACE_S": "1",
    }


@pytest.fixture(scope="module")
def worker_metrics_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def worker(
    settings: Settings,  # the database is migrated before the worker connects
    jobs_log_dir: Path,
    worker_env: dict[str, str],
    worker_metrics_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CeleryProcess]:
    env = {
        **worker_env,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path_factory.mktemp("worker-metrics")),
        "TRIPBOOK_WORKER_METRICS_PORT": str(worker_metrics_port),
    }
    with run_worker(jobs_log_dir, env=env) as process:
        yield process


@pytest.fixture(scope="package")
def broker(settings: Settings) -> Iterator[Celery]:
    """A client of the test broker, to send tasks by name as the relay and beat do."""
    client = create_client(settings)
    yield client
    client.close()


@pytest.fixture
def booking(
    client: httpx.AsyncClient,
    factories: Factories,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Booking:
    return Booking(client=client, factories=factories, sessionmaker=sessionmaker)
