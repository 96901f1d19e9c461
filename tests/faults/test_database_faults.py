"""PostgreSQL ends tripbook's connections under load: answers stay 2xx or a 503 problem,
nothing hangs, the pools heal by themselves, and every hold's answer agrees with the rows.

A real gunicorn (two workers) takes concurrent holds and reads while another connection
runs ``pg_terminate_backend`` on every tripbook session of the test database, several
times, each time once a further slice of the requests has been answered. Each hold carries
its own request id (kept on its outbox row) and passenger names, so afterwards every answer
is matched to the database: a 201 has exactly its reservation, passengers and "seats held"
event; a 503 left nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from tests import environment
from tests.support.api import hold_body
from tests.support.factories import Account, Factories
from tests.support.seats import DepartureSeats, departure_ledger
from tests.support.servers import Gunicorn, run_gunicorn
from tripbook.trips.models import Departure

pytestmark = pytest.mark.slow

CLIENTS = 16
REQUESTS = 480  # the load is this many requests, however long they take
# Only a hang comes near this (each request times out after CLIENT_TIMEOUT_S anyway);
# below pytest's own timeout, so the failure says how far the load got.
SAFETY_TIMEOUT_S = 150.0
KILLS = 4  # after each further REQUESTS / (KILLS + 1) answers
CLIENT_TIMEOUT_S = 15.0
BURST = 10  # holds (and as many reads) once the load is over: the pool has recovered
SEATS = 2000  # holds of 1 or 2 seats never sell this out: refusals would be a bug here

TERMINATE = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE application_name = 'tripbook' AND datname = current_database() "
    "AND pid <> pg_backend_pid()"
)
# The departure's reservations, each with its passengers' names in order.
RESERVATIONS = """
    SELECT r.id::text AS id, r.seats,
           array_remove(array_agg(p.full_name ORDER BY p.position), NULL) AS names
    FROM reservation AS r LEFT JOIN passenger AS p ON p.reservation_id = r.id
    WHERE r.departure_id = $1
    GROUP BY r.id
"""
# Outbox rows written by the given requests, or naming the given reservations.
EVENTS = """
    SELECT id, request_id, task, payload->>'reservation_id' AS reservation_id
    FROM outbox_event
    WHERE request_id = ANY($1::text[]) OR payload->>'reservation_id' = ANY($2::text[])
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    # Trip reads go to PostgreSQL every time, not to the cache.
    env = {"TRIPBOOK_TRIP_CACHE_TTL_S": "0"}
    with run_gunicorn(tmp_path_factory.mktemp("db-faults"), workers=2, env=env) as running:
        yield running


@dataclass(frozen=True, slots=True)
class Hold:
    """One hold request, recognisable in the database: its request id is on its outbox
    row, and its passengers' names start with it."""

    request_id: str
    seats: int

    @property
    def names(self) -> list[str]:
        return [f"{self.request_id} passenger {n}" for n in range(self.seats)]

    @staticmethod
    def request_id_of(passenger_name: str) -> str:
        return passenger_name.rpartition(" passenger ")[0]


@dataclass(frozen=True, slots=True)
class HoldAnswer:
    hold: Hold
    status: int  # 0: no HTTP answer at all (a timeout or a dropped connection)
    reservation_id: str | None  # from a 201's body


@dataclass
class Load:
    departure: Departure
    accounts: list[Account]
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    statuses: Counter[int] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)
    holds: list[HoldAnswer] = field(default_factory=list)
    answered: int = 0
    killed: list[int] = field(default_factory=list)  # sessions ended, per kill
    progress: asyncio.Condition = field(default_factory=asyncio.Condition)

    def hold(self, index: int, seats: int) -> Hold:
        return Hold(request_id=f"dbfault-{self.run}-{index:04d}", seats=seats)

    async def one(self, http: httpx.AsyncClient, index: int) -> None:
        kind = index % 3
        account = self.accounts[index % len(self.accounts)]
        hold = self.hold(index, 1 + index % 2) if kind == 0 else None
        try:
            if hold is not None:
                response = await post_hold(http, self.departure.id, hold, account)
            elif kind == 1:
                response = await http.get(f"/v1/trips/{self.departure.trip_id}")
            else:
                response = await http.get("/v1/reservations", headers=account.headers)
        except httpx.TransportError as exc:  # a hang (timeout) or a dropped connection
            status, body = 0, None
            self.bad.append(f"{type(exc).__name__}: {exc}")
        else:
            status, body = response.status_code, response
            if not acceptable(response):
                self.bad.append(f"{response.status_code} {response.text[:300]}")
        self.statuses[status] += 1
        if hold is not None:
            self.holds.append(answer_of(hold, status, body))
        async with self.progress:
            self.answered += 1
            self.progress.notify_all()

    async def wait_for(self, answered: int) -> None:
        async with self.progress:
            await self.progress.wait_for(lambda: self.answered >= answered)


async def post_hold(
    http: httpx.AsyncClient, departure_id: int, hold: Hold, account: Account
) -> httpx.Response:
    return await http.post(
        "/v1/reservations",
        json=hold_body(departure_id, hold.seats, names=hold.names),
        headers={**account.headers, "X-Request-ID": hold.request_id},
    )


def answer_of(hold: Hold, status: int, response: httpx.Response | None) -> HoldAnswer:
    reservation_id = response.json()["id"] if response is not None and status == 201 else None
    return HoldAnswer(hold=hold, status=status, reservation_id=reservation_id)


def acceptable(response: httpx.Response) -> bool:
    if 200 <= response.status_code < 300:
        return True
    return (
        response.status_code == 503
        and response.headers.get("content-type") == "application/problem+json"
        and response.json()["code"] == "UNAVAILABLE"
        and "retry-after" in response.headers
    )


async def terminate_sessions(after: list[int], load: Load) -> None:
    """Each time ``load`` has answered ``after[i]`` requests, end every tripbook session."""
    killer = await asyncpg.connect(environment.DATABASE_DSN)
    try:
        for answered in after:
            await load.wait_for(answered)
            load.killed.append(int(await killer.fetchval(TERMINATE)))
    finally:
        await killer.close()


async def drive(server: Gunicorn, load: Load) -> list[int]:
    """``REQUESTS`` requests over ``CLIENTS`` connections, sessions killed along the way."""
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    indexes = iter(range(REQUESTS))
    async with httpx.AsyncClient(
        base_url=server.url, limits=limits, timeout=CLIENT_TIMEOUT_S
    ) as http:

        async def client() -> None:
            for index in indexes:
                await load.one(http, index)

        slice_ = REQUESTS // (KILLS + 1)
        killer = asyncio.create_task(
            terminate_sessions([slice_ * n for n in range(1, KILLS + 1)], load)
        )
        try:
            await asyncio.gather(*(client() for _ in range(CLIENTS)))
            await killer  # every threshold is below REQUESTS: it has done its kills
        finally:
            if not killer.done():
                killer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await killer
    return load.killed


async def mismatches(
    connection: asyncpg.Connection, departure_id: int, answers: list[HoldAnswer]
) -> list[str]:
    """Every way the database disagrees with the hold answers (none: they agree).

    201 ⇔ exactly one reservation with its passengers, named in the answer, and one
    ``email.send`` outbox row of that request naming it; 503 ⇔ no row of the request at
    all; and no reservation or event that no 201 accounts for.
    """
    reservations = await connection.fetch(RESERVATIONS, departure_id)
    by_request: dict[str, list[asyncpg.Record]] = {}
    problems = []
    for row in reservations:
        if not row["names"] or len(row["names"]) != row["seats"]:
            problems.append(f"reservation {row['id']} half-written: {row['names']!r}")
        if row["names"]:
            by_request.setdefault(Hold.request_id_of(row["names"][0]), []).append(row)
    events = await connection.fetch(
        EVENTS, [a.hold.request_id for a in answers], [row["id"] for row in reservations]
    )
    events_by_request: dict[str | None, list[asyncpg.Record]] = {}
    for event in events:
        events_by_request.setdefault(event["request_id"], []).append(event)

    for answer in answers:
        request_id = answer.hold.request_id
        rows = [(row["id"], list(row["names"])) for row in by_request.pop(request_id, [])]
        written = [
            (event["task"], event["reservation_id"])
            for event in events_by_request.pop(request_id, [])
        ]
        if answer.status == 201:
            expected_rows = [(answer.reservation_id, answer.hold.names)]
            expected_events = [("email.send", answer.reservation_id)]
        else:  # 503: nothing may have been written
            expected_rows, expected_events = [], []
        if rows != expected_rows:
            problems.append(f"{request_id} answered {answer.status}, reservations {rows}")
        if written != expected_events:
            problems.append(f"{request_id} answered {answer.status}, outbox rows {written}")
    # What is left was written by no request that said so.
    problems += [f"reservation without a 201: {rows}" for rows in by_request.values()]
    problems += [f"outbox rows without a 201: {rows}" for rows in events_by_request.values()]
    return problems


async def check_database(
    departure_id: int, answers: list[HoldAnswer]
) -> tuple[list[str], DepartureSeats]:
    connection = await asyncpg.connect(environment.DATABASE_DSN)
    try:
        problems = await mismatches(connection, departure_id, answers)
        return problems, await departure_ledger(connection, departure_id)
    finally:
        await connection.close()


class TestConnectionsTerminated:
    async def test_load_survives_and_the_pool_recovers(
        self, server: Gunicorn, factories: Factories, app: FastAPI
    ) -> None:
        departure = await factories.departure(seats=SEATS)
        load = Load(departure=departure, accounts=[await factories.account() for _ in range(8)])
        # The test's own pool closes first: every tripbook session left is gunicorn's, so
        # each kill's count is of sessions serving the load.
        await app.state.engine.dispose()

        started = time.perf_counter()
        try:
            killed = await asyncio.wait_for(drive(server, load), SAFETY_TIMEOUT_S)
        except TimeoutError:
            pytest.fail(f"{load.answered} of {REQUESTS} answered in {SAFETY_TIMEOUT_S}s: a hang")
        elapsed = time.perf_counter() - started

        # Recovery: a burst of fresh requests, every one answered as if nothing happened.
        burst_holds = [load.hold(REQUESTS + n, 1) for n in range(BURST)]
        async with httpx.AsyncClient(base_url=server.url, timeout=CLIENT_TIMEOUT_S) as http:
            burst: list[httpx.Response] = await asyncio.gather(
                *(
                    post_hold(http, departure.id, hold, load.accounts[n % len(load.accounts)])
                    for n, hold in enumerate(burst_holds)
                ),
                *(http.get(f"/v1/trips/{departure.trip_id}") for _ in range(BURST)),
            )
        answers = load.holds + [
            answer_of(hold, response.status_code, response)
            for hold, response in zip(burst_holds, burst[:BURST], strict=True)
        ]
        problems, seats = await check_database(departure.id, answers)
        hold_statuses: Counter[int] = Counter(answer.status for answer in load.holds)
        print(  # noqa: T201 - the figures the report quotes
            f"\ndb faults: {load.answered} answers in {elapsed:.1f}s, "
            f"statuses={dict(sorted(load.statuses.items()))}, "
            f"holds={dict(sorted(hold_statuses.items()))}, sessions killed={killed}, "
            f"burst={dict(Counter(r.status_code for r in burst))}, "
            f"seats total={seats.seats_total} available={seats.seats_available} "
            f"in use={seats.seats_held}"
        )

        assert load.bad == []
        assert load.answered == REQUESTS
        assert len(killed) == KILLS
        assert all(sessions >= 1 for sessions in killed), f"a kill ended nothing: {killed}"
        assert load.statuses[200] > 0
        assert hold_statuses[201] > 0
        assert set(hold_statuses) <= {201, 503}, "seats were refused though plenty were left"
        assert [r.status_code for r in burst] == [201] * BURST + [200] * BURST
        assert problems == []
        assert seats.reservations == sum(answer.status == 201 for answer in answers)
        assert seats.balanced, seats
        assert "unhandled_exception" not in server.log()
