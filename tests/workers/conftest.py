"""One payment sandbox and SMTP sink for the package, one real worker per module.

The worker runs with the test environment, the sandbox and sink addresses, and short
retry backoffs; the in-process API (``client``) publishes to the same broker key space.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.factories import Account, Factories
from tests.support.sandboxes import (
    PaymentSandbox,
    SmtpSink,
    free_port,
    run_payment_sandbox,
    run_smtp_sink,
)
from tests.support.workers import CeleryProcess, eventually, run_worker
from tripbook.core.db import unit_of_work
from tripbook.core.outbox import OutboxEvent
from tripbook.core.relay import create_client
from tripbook.payments.models import Payment
from tripbook.reservations.models import Reservation
from tripbook.settings import Settings
from tripbook.trips.models import Departure


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


@dataclass
class Booking:
    """The customer's side of the flow, through the HTTP API, plus what the DB holds."""

    client: httpx.AsyncClient
    factories: Factories
    sessionmaker: async_sessionmaker[AsyncSession]

    async def customer_and_departure(
        self, *, seats: int = 10, price: int = 2500
    ) -> tuple[Account, Departure]:
        return await self.factories.account(), await self.factories.departure(
            seats=seats, price=price
        )

    async def hold(self, account: Account, departure_id: int, seats: int = 1) -> dict[str, Any]:
        response = await self.client.post(
            "/v1/reservations",
            json={
                "departure_id": departure_id,
                "seats": seats,
                "passengers": [{"full_name": f"Passenger {n}"} for n in range(seats)],
            },
            headers=account.headers,
        )
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def pay(
        self, account: Account, reservation_id: str, token: str, request_id: str | None = None
    ) -> dict[str, Any]:
        headers = dict(account.headers)
        if request_id:
            headers["X-Request-ID"] = request_id
        response = await self.client.post(
            f"/v1/reservations/{reservation_id}/payment",
            json={"payment_token": token},
            headers=headers,
        )
        assert response.status_code == 202, response.text
        body: dict[str, Any] = response.json()
        assert body["status"] == "payment_pending"
        return body

    async def reservation(self, reservation_id: str) -> Reservation:
        async with self.sessionmaker() as session:
            reservation = await session.get(Reservation, uuid.UUID(reservation_id))
            assert reservation is not None
            return reservation

    async def wait_for_status(
        self, reservation_id: str, status: str, timeout_s: float = 20.0
    ) -> Reservation:
        async def reached() -> Reservation | None:
            reservation = await self.reservation(reservation_id)
            return reservation if reservation.status == status else None

        reservation: Reservation = await eventually(
            reached, timeout_s=timeout_s, what=f"status {status}"
        )
        return reservation

    async def payments(self, reservation_id: str, kind: str = "charge") -> list[Payment]:
        async with self.sessionmaker() as session:
            result = await session.scalars(
                select(Payment)
                .where(Payment.reservation_id == uuid.UUID(reservation_id), Payment.kind == kind)
                .order_by(Payment.created_at)
            )
            return list(result)

    async def events(self, reservation_id: str) -> list[OutboxEvent]:
        """The outbox rows about a reservation (their payloads name it or its payment)."""
        payment_ids = [str(p.id) for p in await self.payments(reservation_id)]
        async with self.sessionmaker() as session:
            result = await session.scalars(
                select(OutboxEvent)
                .where(
                    (OutboxEvent.payload["reservation_id"].astext == reservation_id)
                    | OutboxEvent.payload["payment_id"].astext.in_(payment_ids)
                )
                .order_by(OutboxEvent.created_at)
            )
            return list(result)


@pytest.fixture
def booking(
    client: httpx.AsyncClient,
    factories: Factories,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Booking:
    return Booking(client=client, factories=factories, sessionmaker=sessionmaker)


async def expire_now(booking: Booking, reservation_id: str) -> None:
    """Move a reservation's deadline into the past, as if its time had run out."""
    async with unit_of_work(booking.sessionmaker) as session:
        await session.execute(
            update(Reservation)
            .where(Reservation.id == uuid.UUID(reservation_id))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
