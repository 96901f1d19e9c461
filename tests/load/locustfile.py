"""Locust scenarios for tripbook: browsing, booking, and a flash sale on one departure.

Run it through ``python -m tests.load.run`` (a local stack, then checks), or on its own
against any tripbook::

    .venv/bin/locust -f tests/load/locustfile.py --host https://staging.example.com

Environment (all optional):

- ``TRIPBOOK_LOAD_WEIGHT_BROWSER`` / ``_BOOKER`` / ``_FLASHSALE``: user-class weights
  (default 5 / 3 / 2; 0 leaves the class out).
- ``TRIPBOOK_LOAD_FLASH_DEPARTURE``: the flash-sale departure id; without it the upcoming
  departure with the fewest free seats (but at least one) is chosen when the test starts.
- ``TRIPBOOK_LOAD_CONFIRM_POLLS`` (20) and ``TRIPBOOK_LOAD_CONFIRM_POLL_S`` (0.5): how long a
  booker polls for ``confirmed`` after paying.
- ``TRIPBOOK_LOAD_CANCEL_RATIO`` (0.15): share of bookings a booker cancels.
- ``TRIPBOOK_LOAD_CHAOS`` (``1``: set by ``tests.load.run --payment-chaos``): the payment
  gateway is made slow and flaky, so a booker who stops polling while the payment is still
  ``payment_pending`` saw an expected slow settlement, not a failure: it is recorded as
  the successful FLOW ``payment → still pending (chaos)`` and tallied
  ``expected_slow_settlement``. Without it, that is a failed ``payment → confirmed``.
- ``TRIPBOOK_LOAD_OUTCOMES_FILE``: where to write the outcome tally as JSON when the test
  stops (``tests.load.run`` reads it for its checks).

Outcomes: 409 ``SEATS_UNAVAILABLE`` and 429 are expected and count as successes in locust
(tallied apart); a 5xx is a failure named ``5xx …`` so it stands out in the failure table.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from locust import HttpUser, between, events, task
from locust.clients import ResponseContextManager
from locust.env import Environment
from locust.exception import StopUser

PASSWORD = "load-test-passw0rd"
PAYMENT_TOKEN = "tok_approve"  # the sandbox approves it
CATALOGUE_PLACES = ("Lisbon", "Porto", "Madrid", "Barcelona", "Paris", "Amsterdam")


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(f"TRIPBOOK_LOAD_{name}")
    return float(raw) if raw not in (None, "") else default


def _weight(name: str, default: int) -> int:
    value = int(_env_float(f"WEIGHT_{name}", default))
    if value < 0:
        raise ValueError(f"TRIPBOOK_LOAD_WEIGHT_{name} must be ≥ 0")
    return value


WEIGHT_BROWSER = _weight("BROWSER", 5)
WEIGHT_BOOKER = _weight("BOOKER", 3)
WEIGHT_FLASHSALE = _weight("FLASHSALE", 2)
CONFIRM_POLLS = int(_env_float("CONFIRM_POLLS", 20))
CONFIRM_POLL_S = _env_float("CONFIRM_POLL_S", 0.5)
CANCEL_RATIO = _env_float("CANCEL_RATIO", 0.15)
CHAOS = os.environ.get("TRIPBOOK_LOAD_CHAOS", "") == "1"
MAX_RETRY_AFTER_S = 5.0
log = logging.getLogger("tripbook.load")
logging.getLogger("httpx").setLevel(logging.WARNING)  # the discovery requests


# --- outcome tally --------------------------------------------------------------------------


class Tally:
    """What happened, beyond locust's own stats: expected refusals, 5xx, booking flows."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()

    def add(self, key: str, amount: int = 1) -> None:
        with self._lock:
            self.counts[key] += amount

    def status(self, code: int) -> None:
        with self._lock:
            self.statuses[str(code)] += 1
            self.counts["requests"] += 1
            if code >= 500:
                self.counts["http_5xx"] += 1
            elif code == 0:
                self.counts["connection_errors"] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"counts": dict(self.counts), "statuses": dict(self.statuses)}


TALLY = Tally()


@events.request.add_listener  # type: ignore[untyped-decorator]
def _count_request(
    request_type: str, response: Any = None, exception: BaseException | None = None, **_: Any
) -> None:
    if request_type == "FLOW":  # a whole booking flow, not an HTTP request
        return
    code = getattr(response, "status_code", None)
    TALLY.status(int(code) if code is not None else 0)
    if exception is not None:
        TALLY.add("failures")


@events.quitting.add_listener  # type: ignore[untyped-decorator]
def _write_outcomes(environment: Environment, **_: Any) -> None:
    snapshot = TALLY.snapshot()
    counts = snapshot["counts"]
    log.info(
        "tripbook outcomes: %s | statuses: %s",
        ", ".join(f"{key}={counts[key]}" for key in sorted(counts)),
        ", ".join(f"{k}={v}" for k, v in sorted(snapshot["statuses"].items())),
    )
    path = os.environ.get("TRIPBOOK_LOAD_OUTCOMES_FILE")
    if path:
        snapshot["flash_departure_id"] = FLASH.departure_id
        Path(path).write_text(json.dumps(snapshot, indent=2) + "\n")


# --- shared knowledge of the catalogue ------------------------------------------------------


class Flash:
    """The one departure the flash-sale users race for, chosen once per test run."""

    def __init__(self) -> None:
        raw = os.environ.get("TRIPBOOK_LOAD_FLASH_DEPARTURE")
        self.departure_id: int | None = int(raw) if raw else None
        self.sold_out_at: float | None = None


FLASH = Flash()
TRIP_IDS: list[int] = []


@events.test_start.add_listener  # type: ignore[untyped-decorator]
def _discover(environment: Environment, **_: Any) -> None:
    """List the catalogue once (trip ids; the flash departure when none was given)."""
    if environment.host is None:
        raise RuntimeError("no target: pass --host")
    import httpx  # the discovery is plain HTTP, outside locust's stats

    with httpx.Client(base_url=environment.host, timeout=10.0) as client:
        cursor: str | None = None
        trips: list[int] = []
        for _page in range(20):
            params: dict[str, Any] = {"limit": 100}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/v1/trips", params=params).raise_for_status().json()
            trips.extend(int(item["id"]) for item in page["items"])
            cursor = page.get("next_cursor")
            if not cursor:
                break
        TRIP_IDS[:] = trips
        if FLASH.departure_id is None and WEIGHT_FLASHSALE:
            now = datetime.now(UTC)
            best: tuple[int, int] | None = None
            for trip_id in trips:
                detail = client.get(f"/v1/trips/{trip_id}").raise_for_status().json()
                for departure in detail["departures"]:
                    free = int(departure["seats_available"])
                    upcoming = datetime.fromisoformat(departure["departs_at"]) > now
                    if upcoming and free > 0 and (best is None or free < best[0]):
                        best = (free, int(departure["id"]))
            FLASH.departure_id = best[1] if best else None
    log.info("tripbook load: %d trips; flash-sale departure %s", len(TRIP_IDS), FLASH.departure_id)


# --- helpers --------------------------------------------------------------------------------


def problem_code(response: Any) -> str | None:
    try:
        body = response.json()
    except Exception:
        return None
    return body.get("code") if isinstance(body, dict) else None


def classify(response: ResponseContextManager, *expected: int) -> str:
    """Mark the response in locust and say what it was: ok, sold_out, limited, error."""
    code = response.status_code
    if code in expected:
        response.success()  # type: ignore[no-untyped-call]
        return "ok"
    if code == 409 and problem_code(response) == "SEATS_UNAVAILABLE":
        response.success()  # type: ignore[no-untyped-call]
        TALLY.add("expected_409_seats_unavailable")
        return "sold_out"
    if code == 429:
        response.success()  # type: ignore[no-untyped-call]
        TALLY.add("expected_429")
        return "limited"
    if code >= 500:
        response.failure(f"5xx: HTTP {code} {problem_code(response) or ''}".rstrip())  # type: ignore[no-untyped-call]
    elif code == 0:
        response.failure(f"connection error: {response.error}")  # type: ignore[no-untyped-call]
    else:
        response.failure(f"unexpected HTTP {code} {problem_code(response) or ''}".rstrip())  # type: ignore[no-untyped-call]
    return "error"


def retry_after(response: Any) -> float:
    try:
        return min(float(response.headers.get("Retry-After", 1)), MAX_RETRY_AFTER_S)
    except ValueError:
        return 1.0


class Customer(HttpUser):
    """A signed-up customer: registers a fresh account, then logs in for a bearer token."""

    abstract = True
    token: str | None = None

    def on_start(self) -> None:
        self.email = f"load-{uuid.uuid4().hex[:16]}@example.com"
        for _attempt in range(10):
            with self.client.post(
                "/v1/auth/register",
                json={"email": self.email, "password": PASSWORD, "full_name": "Load Tester"},
                catch_response=True,
            ) as response:
                outcome = classify(response, 201, 409)  # 409: registered by an earlier try
            if outcome == "ok":
                break
            time.sleep(retry_after(response))
        else:
            raise StopUser()
        self.login()

    def login(self) -> None:
        for _attempt in range(10):
            with self.client.post(
                "/v1/auth/token",
                data={"username": self.email, "password": PASSWORD},
                catch_response=True,
            ) as response:
                if classify(response, 200) == "ok":
                    self.token = response.json()["access_token"]
                    return
            time.sleep(retry_after(response))
        raise StopUser()

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def hold(self, departure_id: int, seats: int) -> tuple[str, dict[str, Any] | None]:
        body = {
            "departure_id": departure_id,
            "seats": seats,
            "passengers": [{"full_name": f"Passenger {n + 1}"} for n in range(seats)],
        }
        headers = {**self.auth, "Idempotency-Key": f"load-hold-{uuid.uuid4()}"}
        with self.client.post(
            "/v1/reservations", json=body, headers=headers, catch_response=True
        ) as response:
            outcome = classify(response, 201)
            if outcome == "ok":
                TALLY.add("held")
                return outcome, response.json()
            if response.status_code == 401:
                self.login()
        return outcome, None

    def pay_and_confirm(self, reservation_id: str) -> str | None:
        """Pay, then poll until confirmed (bounded); the final status seen, or None."""
        headers = {**self.auth, "Idempotency-Key": f"load-pay-{uuid.uuid4()}"}
        with self.client.post(
            f"/v1/reservations/{reservation_id}/payment",
            json={"payment_token": PAYMENT_TOKEN},
            headers=headers,
            name="/v1/reservations/[id]/payment",
            catch_response=True,
        ) as response:
            if classify(response, 202) != "ok":
                return None
        TALLY.add("paid")
        started = time.perf_counter()
        status = "payment_pending"
        for _poll in range(CONFIRM_POLLS):
            time.sleep(CONFIRM_POLL_S)
            with self.client.get(
                f"/v1/reservations/{reservation_id}",
                headers=self.auth,
                name="/v1/reservations/[id]",
                catch_response=True,
            ) as response:
                if classify(response, 200) != "ok":
                    continue
                status = response.json()["status"]
            if status != "payment_pending":
                break
        elapsed_ms = (time.perf_counter() - started) * 1000
        # One "FLOW" entry per payment: how long until the worker confirmed it.
        name = "payment → confirmed"
        failure = None if status == "confirmed" else RuntimeError(f"ended {status}")
        if CHAOS and status == "payment_pending":
            # The gateway is slow and flaky on purpose: settling may take longer than the
            # booker polls (the runner checks that it does settle).
            name, failure = "payment → still pending (chaos)", None
            TALLY.add("expected_slow_settlement")
        events.request.fire(  # type: ignore[no-untyped-call]
            request_type="FLOW",
            name=name,
            response_time=elapsed_ms,
            response_length=0,
            exception=failure,
            context={},
        )
        TALLY.add(f"seen_{status}")
        return status

    def cancel(self, reservation_id: str) -> None:
        with self.client.post(
            f"/v1/reservations/{reservation_id}/cancel",
            headers=self.auth,
            name="/v1/reservations/[id]/cancel",
            catch_response=True,
        ) as response:
            if classify(response, 200) == "ok":
                TALLY.add("cancelled")


# --- the user classes -----------------------------------------------------------------------


class Browser(HttpUser):
    """Anonymous visitors: search with filters, page on, open a trip."""

    weight = WEIGHT_BROWSER
    abstract = WEIGHT_BROWSER == 0
    wait_time = between(0.5, 2.0)

    @task(3)
    def search(self) -> None:
        params: dict[str, Any] = {"limit": random.choice((5, 10, 20))}
        if random.random() < 0.6:
            params["origin"] = random.choice(CATALOGUE_PLACES)
        if random.random() < 0.3:
            params["destination"] = random.choice(CATALOGUE_PLACES)
        if random.random() < 0.5:
            params["min_seats"] = random.randint(1, 4)
        if random.random() < 0.5:
            after = datetime.now(UTC) + timedelta(days=random.randint(0, 10))
            params["departs_after"] = after.isoformat()
        with self.client.get(
            "/v1/trips", params=params, name="/v1/trips?[filters]", catch_response=True
        ) as response:
            if classify(response, 200) != "ok":
                return
            page = response.json()
        if page.get("next_cursor") and random.random() < 0.3:
            with self.client.get(
                "/v1/trips",
                params={**params, "cursor": page["next_cursor"]},
                name="/v1/trips?cursor=[next]",
                catch_response=True,
            ) as response:
                classify(response, 200)
        if page["items"]:
            self.detail(int(random.choice(page["items"])["id"]))

    @task(2)
    def trip_detail(self) -> None:
        if TRIP_IDS:
            self.detail(random.choice(TRIP_IDS))

    def detail(self, trip_id: int) -> None:
        with self.client.get(
            f"/v1/trips/{trip_id}", name="/v1/trips/[id]", catch_response=True
        ) as response:
            classify(response, 200)


class Booker(Customer):
    """Customers who pick an upcoming departure, hold 1 to 3 seats, pay, and wait for it."""

    weight = WEIGHT_BOOKER
    abstract = WEIGHT_BOOKER == 0
    wait_time = between(1.0, 3.0)

    def pick_departure(self, seats: int) -> int | None:
        if not TRIP_IDS:
            return None
        trip_id = random.choice(TRIP_IDS)
        with self.client.get(
            f"/v1/trips/{trip_id}", name="/v1/trips/[id]", catch_response=True
        ) as response:
            if classify(response, 200) != "ok":
                return None
            departures = response.json()["departures"]
        now = datetime.now(UTC)
        candidates = [
            int(d["id"])
            for d in departures
            if int(d["id"]) != FLASH.departure_id
            and int(d["seats_available"]) >= seats
            and datetime.fromisoformat(d["departs_at"]) > now
        ]
        return random.choice(candidates) if candidates else None

    @task
    def book(self) -> None:
        seats = random.randint(1, 3)
        departure_id = self.pick_departure(seats)
        if departure_id is None:
            return
        outcome, reservation = self.hold(departure_id, seats)
        if reservation is None:
            if outcome == "limited":
                time.sleep(MAX_RETRY_AFTER_S)
            return
        reservation_id = str(reservation["id"])
        if random.random() < CANCEL_RATIO / 2:  # changed their mind before paying
            self.cancel(reservation_id)
            return
        status = self.pay_and_confirm(reservation_id)
        if status == "confirmed" and random.random() < CANCEL_RATIO / 2:
            self.cancel(reservation_id)  # a paid booking cancelled: refund job


class FlashSale(Customer):
    """Many customers racing for the last seats of one departure; most of them lose (409)."""

    weight = WEIGHT_FLASHSALE
    abstract = WEIGHT_FLASHSALE == 0
    wait_time = between(0.1, 0.5)

    @task
    def grab(self) -> None:
        if FLASH.departure_id is None:
            raise StopUser()
        outcome, reservation = self.hold(FLASH.departure_id, random.randint(1, 3))
        if reservation is not None:
            TALLY.add("flash_won")
            self.pay_and_confirm(str(reservation["id"]))
        elif outcome == "sold_out":
            TALLY.add("flash_lost")
