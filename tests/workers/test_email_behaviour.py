"""``email.send`` against an SMTP server that is down, then back; that stays down until the
task gives up; and that requires STARTTLS and a login.

Each test runs its own worker pointed at its own SMTP port. "Down" is a port nobody
listens on (connection refused); "back" is the SMTP sink started on that port
(tests/support/behaviour_smtp.py). Every email is the "seats held" one of a fresh hold.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.behaviour_smtp import run_smtp_sink_on, self_signed_certificate
from tests.support.booking import Booking
from tests.support.money import emails_sent, subjects
from tests.support.sandboxes import free_port
from tests.support.workers import CeleryProcess, eventually, run_beat, run_worker
from tripbook.core.outbox import OutboxEvent, ProcessedEvent

pytestmark = pytest.mark.slow

BACKOFF_S = 0.2
BACKOFF_MAX_S = 1.6
# Celery's timer may run a countdown's task a few milliseconds early.
CLOCK_SLACK_S = 0.02


def task_lines(worker: CeleryProcess, task_id: uuid.UUID, event: str) -> list[dict[str, Any]]:
    return [
        line
        for line in worker.log_lines()
        if line.get("task_id") == str(task_id) and line.get("event") == event
    ]


def finished_runs(worker: CeleryProcess, task_name: str) -> list[dict[str, Any]]:
    return [
        line
        for line in worker.log_lines()
        if line.get("task_name") == task_name and line.get("event") == "task_finished"
    ]


def succeeded(finished: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    """The runs of a task, once one of them succeeded."""
    return finished if any(line["state"] == "SUCCESS" for line in finished) else None


def at(line: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(line["timestamp"])


def at_least(count: int, lines: Callable[[], list[dict[str, Any]]]) -> Callable[[], bool]:
    return lambda: len(lines()) >= count


async def held_email(booking: Booking, reservation_id: str) -> OutboxEvent:
    """The outbox event of the reservation's "seats held" email."""
    [event] = [
        event
        for event in await booking.events(reservation_id)
        if event.task == "email.send" and event.payload["template"] == "reservation_held"
    ]
    return event


async def outbox_row(booking: Booking, event_id: uuid.UUID) -> OutboxEvent:
    async with booking.sessionmaker() as session:
        event = await session.get(OutboxEvent, event_id)
        assert event is not None
        return event


async def claimed(booking: Booking, event_id: uuid.UUID) -> bool:
    async with booking.sessionmaker() as session:
        return await session.get(ProcessedEvent, (event_id, "email.send")) is not None


def assert_backed_off(worker: CeleryProcess, task_id: uuid.UUID) -> None:
    """Between a failed send and the next run, retry n waited at least half of
    min(cap, base * 2**n) (the rest is jitter): the configured backoff, growing."""
    retries = task_lines(worker, task_id, "task_retry")
    starts = task_lines(worker, task_id, "task_started")
    assert [line["retries"] for line in starts] == list(range(len(starts)))
    for n, (failed, next_run) in enumerate(zip(retries, starts[1:], strict=False)):
        least = min(BACKOFF_MAX_S, BACKOFF_S * 2**n) / 2
        waited = (at(next_run) - at(failed)).total_seconds()
        assert waited >= least - CLOCK_SLACK_S, f"retry {n}: {waited:.3f}s < {least}s"


@pytest.fixture
def smtp_env(worker_env: dict[str, str]) -> Callable[[int], dict[str, str]]:
    """The package's worker environment with SMTP on ``port`` and growing backoffs."""

    def env(port: int) -> dict[str, str]:
        return {
            **worker_env,
            "TRIPBOOK_SMTP_PORT": str(port),
            "TRIPBOOK_TASK_RETRY_BACKOFF_S": str(BACKOFF_S),
            "TRIPBOOK_TASK_RETRY_BACKOFF_MAX_S": str(BACKOFF_MAX_S),
        }

    return env


async def test_smtp_down_then_back_delivers_once(
    booking: Booking, jobs_log_dir: Path, smtp_env: Callable[[int], dict[str, str]]
) -> None:
    port = free_port()  # nothing listens here until the SMTP server "comes back"
    # Plenty: the server is back long before these are spent.
    env = {**smtp_env(port), "TRIPBOOK_EMAIL_MAX_RETRIES": "20"}
    account, departure = await booking.customer_and_departure()

    with run_worker(jobs_log_dir, env=env, name="smtp-down") as worker:
        held = await booking.hold(account, departure.id)
        event = await held_email(booking, held["id"])
        await eventually(
            at_least(3, lambda: task_lines(worker, event.id, "task_retry")),
            what="three failed sends",
        )
        assert not await claimed(booking, event.id)  # each failure rolled its claim back

        with run_smtp_sink_on(jobs_log_dir, port) as sink:
            sent = await emails_sent(
                booking.sessionmaker, sink, to=account.email, reservation_id=held["id"]
            )
            messages = sink.messages(to=account.email)
        finished = await eventually(
            lambda: succeeded(task_lines(worker, event.id, "task_finished")),
            what="the email task's last run to be logged",
        )

    assert sent == subjects(held["id"], "reservation_held")
    [message] = messages
    assert message["message_id"] == f"<{event.id}@tripbook.local>"
    retries = task_lines(worker, event.id, "task_retry")
    assert len(retries) >= 3
    assert all("ConnectionRefusedError" in line["reason"] for line in retries)
    assert [line["state"] for line in finished] == ["RETRY"] * len(retries) + ["SUCCESS"]
    assert_backed_off(worker, event.id)


async def test_retries_spent_then_the_outbox_redelivers_once_smtp_is_back(
    booking: Booking, jobs_log_dir: Path, smtp_env: Callable[[int], dict[str, str]]
) -> None:
    """The task gives up after TRIPBOOK_EMAIL_MAX_RETRIES; the event stays unprocessed, so
    beat's outbox sweep publishes it again TRIPBOOK_OUTBOX_REDELIVER_AFTER_S after its
    last publication, and the email is sent, once, by then to a server that is back."""
    port = free_port()
    redeliver_after_s = 3.0
    env = {
        **smtp_env(port),
        "TRIPBOOK_EMAIL_MAX_RETRIES": "2",
        "TRIPBOOK_OUTBOX_REDELIVER_AFTER_S": str(redeliver_after_s),
        "TRIPBOOK_OUTBOX_SWEEP_INTERVAL_S": "0.5",
    }
    account, departure = await booking.customer_and_departure()

    with run_worker(jobs_log_dir, env=env, name="smtp-gone") as worker:
        held = await booking.hold(account, departure.id)
        event = await held_email(booking, held["id"])
        await eventually(
            lambda: any(
                line["state"] == "FAILURE" for line in task_lines(worker, event.id, "task_finished")
            ),
            what="the email task to give up",
        )
        given_up = await outbox_row(booking, event.id)
        # Giving up is an error in the log, naming why; nothing was claimed or sent.
        [gave_up] = [
            line
            for line in worker.log_lines()
            if line.get("task_id") == str(event.id) and line.get("level") == "error"
        ]
        assert "ConnectionRefusedError" in gave_up["event"]
        assert not await claimed(booking, event.id)
        assert given_up.published_at is not None
        assert given_up.publish_attempts == 1

        with run_smtp_sink_on(jobs_log_dir, port) as sink, run_beat(jobs_log_dir, env=env):
            sent = await emails_sent(
                booking.sessionmaker, sink, to=account.email, reservation_id=held["id"]
            )
            # Two more sweeps after it was sent: none sends it again.
            sweeps = len(finished_runs(worker, "maintenance.sweep_outbox"))
            await eventually(
                at_least(sweeps + 2, lambda: finished_runs(worker, "maintenance.sweep_outbox")),
                what="two more outbox sweeps",
            )
            messages = sink.messages(to=account.email)
        redelivered = await outbox_row(booking, event.id)
        runs = task_lines(worker, event.id, "task_started")
        finished = task_lines(worker, event.id, "task_finished")

    assert sent == subjects(held["id"], "reservation_held")
    [message] = messages
    assert message["message_id"] == f"<{event.id}@tripbook.local>"
    # Three runs (the first and two retries), all refused, then the redelivered one.
    assert [line["retries"] for line in runs] == [0, 1, 2, 0]
    assert [line["state"] for line in finished] == ["RETRY", "RETRY", "FAILURE", "SUCCESS"]
    assert redelivered.publish_attempts == 2
    assert any(line.get("event") == "outbox_redelivered" for line in worker.log_lines())
    # Not before it was due.
    assert at(runs[-1]) - given_up.published_at >= timedelta(seconds=redeliver_after_s)


async def test_starttls_and_login(
    booking: Booking,
    jobs_log_dir: Path,
    smtp_env: Callable[[int], dict[str, str]],
    tmp_path: Path,
) -> None:
    """With TRIPBOOK_SMTP_STARTTLS and a username and password, the email reaches a server
    that refuses mail outside TLS or without that login (deploy/sandbox/smtp_sink.py)."""
    user, password = "tripbook-mailer", f"smtp-{uuid.uuid4().hex}"
    port = free_port()
    certificate = self_signed_certificate(tmp_path)
    env = {
        **smtp_env(port),
        "TRIPBOOK_SMTP_STARTTLS": "true",
        "TRIPBOOK_SMTP_CA_FILE": str(certificate.cert),  # trust this server, and only it
        "TRIPBOOK_SMTP_USERNAME": user,
        "TRIPBOOK_SMTP_PASSWORD": password,
    }
    account, departure = await booking.customer_and_departure()

    with (
        run_smtp_sink_on(jobs_log_dir, port, tls=certificate, login=(user, password)) as sink,
        run_worker(jobs_log_dir, env=env, name="smtp-tls") as worker,
    ):
        held = await booking.hold(account, departure.id)
        sent = await emails_sent(
            booking.sessionmaker, sink, to=account.email, reservation_id=held["id"]
        )
        [message] = sink.messages(to=account.email)
        event = await held_email(booking, held["id"])
        retries = task_lines(worker, event.id, "task_retry")

    assert sent == subjects(held["id"], "reservation_held")
    assert (message["tls"], message["auth_login"]) == (True, user)
    assert retries == []  # the first attempt got through
    assert password not in worker.log()


async def test_starttls_refuses_a_server_it_cannot_verify(
    booking: Booking,
    jobs_log_dir: Path,
    smtp_env: Callable[[int], dict[str, str]],
    tmp_path: Path,
) -> None:
    """A certificate nobody vouches for (self-signed, not in TRIPBOOK_SMTP_CA_FILE or the
    system's store) is refused before the login: the password never leaves the worker."""
    user, password = "tripbook-mailer", f"smtp-{uuid.uuid4().hex}"
    port = free_port()
    env = {
        **smtp_env(port),
        "TRIPBOOK_SMTP_STARTTLS": "true",
        "TRIPBOOK_SMTP_USERNAME": user,
        "TRIPBOOK_SMTP_PASSWORD": password,
        "TRIPBOOK_EMAIL_MAX_RETRIES": "0",
    }
    certificate = self_signed_certificate(tmp_path)
    account, departure = await booking.customer_and_departure()

    with (
        run_smtp_sink_on(jobs_log_dir, port, tls=certificate, login=(user, password)) as sink,
        run_worker(jobs_log_dir, env=env, name="smtp-untrusted") as worker,
    ):
        held = await booking.hold(account, departure.id)
        event = await held_email(booking, held["id"])
        await eventually(
            lambda: bool(task_lines(worker, event.id, "task_finished")), what="the one attempt"
        )
        received = sink.messages(to=account.email)
        log = worker.log()

    assert received == []
    assert "CERTIFICATE_VERIFY_FAILED" in log
    assert password not in log
