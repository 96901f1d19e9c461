"""Logs never leak secrets: a whole booking journey through real processes, then grep.

A real gunicorn and a real Celery worker (with the payment sandbox and the SMTP sink) serve
register → token → hold → pay → confirmed → cancel → refunded, everything logged at DEBUG.
Neither process's log may then contain the password, the access token (or its signature),
the ``Authorization`` header value or the payment token.
"""

from __future__ import annotations

import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.api import hold_body
from tests.support.factories import Factories, unique_email
from tests.support.sandboxes import SmtpSink, run_payment_sandbox, run_smtp_sink
from tests.support.servers import run_gunicorn
from tests.support.workers import CeleryProcess, eventually, run_worker, wait_for_messages

pytestmark = pytest.mark.slow

PASSWORD = "Canary-Passw0rd-7319"  # the secret the logs must not show
PAYMENT_TOKEN = "tok_ok_SECRETCANARY123"  # the sandbox approves any tok_ok*
VERBOSE = {"TRIPBOOK_LOG_LEVEL": "DEBUG"}  # the most the processes can ever say


@dataclass
class Journey:
    email: str
    access_token: str
    request_ids: dict[str, str]


@dataclass
class Logs:
    api: str
    worker: str
    api_lines: list[dict[str, Any]]
    worker_lines: list[dict[str, Any]]


def step_id(step: str, run: str) -> str:
    return f"hygiene-{run}-{step}"


async def book_and_cancel(
    url: str, departure_id: int, sink: SmtpSink, worker: CeleryProcess
) -> Journey:
    run = uuid.uuid4().hex[:12]
    ids = {step: step_id(step, run) for step in ("register", "token", "hold", "pay", "cancel")}
    email = unique_email("hygiene")
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        registered = await http.post(
            "/v1/auth/register",
            json={"email": email, "password": PASSWORD, "full_name": "Canary Person"},
            headers={"X-Request-ID": ids["register"]},
        )
        assert registered.status_code == 201, registered.text
        issued = await http.post(
            "/v1/auth/token",
            data={"username": email, "password": PASSWORD},
            headers={"X-Request-ID": ids["token"]},
        )
        assert issued.status_code == 200, issued.text
        access_token = issued.json()["access_token"]
        auth = {"Authorization": f"Bearer {access_token}"}

        held = await http.post(
            "/v1/reservations",
            json=hold_body(departure_id, 2),
            headers={**auth, "X-Request-ID": ids["hold"]},
        )
        assert held.status_code == 201, held.text
        reservation_id = held.json()["id"]

        paid = await http.post(
            f"/v1/reservations/{reservation_id}/payment",
            json={"payment_token": PAYMENT_TOKEN},
            headers={**auth, "X-Request-ID": ids["pay"]},
        )
        assert paid.status_code == 202, paid.text

        async def confirmed() -> bool:
            response = await http.get(f"/v1/reservations/{reservation_id}", headers=auth)
            return bool(response.json()["status"] == "confirmed")

        await eventually(confirmed, timeout_s=20, what="reservation confirmed")
        await wait_for_messages(sink, to=email, count=1)

        cancelled = await http.post(
            f"/v1/reservations/{reservation_id}/cancel",
            headers={**auth, "X-Request-ID": ids["cancel"]},
        )
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"

    # The refund is the last thing the journey makes the worker do.
    worker.wait_for_line(
        lambda line: line.get("event") == "refund" and line.get("request_id") == ids["cancel"]
    )
    return Journey(email=email, access_token=access_token, request_ids=ids)


@pytest.fixture(scope="module")
async def journey(
    tmp_path_factory: pytest.TempPathFactory, factories: Factories
) -> tuple[Journey, Logs]:
    """Run the journey once; return it with every line the API and the worker logged."""
    log_dir: Path = tmp_path_factory.mktemp("hygiene")
    departure = await factories.departure(seats=10)
    with ExitStack() as stack:
        sandbox = stack.enter_context(run_payment_sandbox(log_dir))
        sink = stack.enter_context(run_smtp_sink(log_dir))
        worker_env = {
            **VERBOSE,
            "TRIPBOOK_PAYMENT_GATEWAY_URL": sandbox.url,
            "TRIPBOOK_SMTP_HOST": sink.smtp_host,
            "TRIPBOOK_SMTP_PORT": str(sink.smtp_port),
        }
        worker = stack.enter_context(run_worker(log_dir, env=worker_env))
        server = stack.enter_context(run_gunicorn(log_dir, workers=1, env=VERBOSE))
        done = await book_and_cancel(server.url, departure.id, sink, worker)
    # Both processes have stopped: their logs are complete, shutdown lines included.
    return done, Logs(
        api=server.log(),
        worker=worker.log(),
        api_lines=server.log_lines(),
        worker_lines=worker.log_lines(),
    )


class TestLogHygiene:
    def test_the_logs_saw_the_journey(self, journey: tuple[Journey, Logs]) -> None:
        done, logs = journey
        ids = done.request_ids

        # Every request left an access line in the API's log …
        access_ids = {
            line.get("request_id") for line in logs.api_lines if line["event"] == "request"
        }
        assert set(ids.values()) <= access_ids
        # … and the payment's and the cancellation's ids reached the worker's tasks.
        for step in ("pay", "cancel"):
            worker_ids = {line.get("request_id") for line in logs.worker_lines}
            assert ids[step] in worker_ids
        assert any(line.get("event") == "gateway_call" for line in logs.worker_lines)
        assert any(line.get("level") == "debug" for line in logs.worker_lines)

    @pytest.mark.parametrize("process", ["api", "worker"])
    def test_no_password(self, journey: tuple[Journey, Logs], process: str) -> None:
        _, logs = journey

        assert PASSWORD not in getattr(logs, process)

    @pytest.mark.parametrize("process", ["api", "worker"])
    def test_no_access_token(self, journey: tuple[Journey, Logs], process: str) -> None:
        done, logs = journey
        text = getattr(logs, process)
        signature = done.access_token.rsplit(".", 1)[1]

        assert done.access_token not in text
        assert f"Bearer {done.access_token}" not in text
        assert signature not in text

    @pytest.mark.parametrize("process", ["api", "worker"])
    def test_no_payment_token(self, journey: tuple[Journey, Logs], process: str) -> None:
        _, logs = journey

        assert "SECRETCANARY" not in getattr(logs, process)
