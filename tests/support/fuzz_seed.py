"""Real resources for tests/test_fuzz.py, so schemathesis reaches the code behind a lookup.

Made through the app in-process (its HTTP API where a customer would act, the service steps
a worker runs where none is started), before gunicorn serves the same database.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from tests.support.factories import Account, Factories
from tests.support.payments import open_payment, refund_as, settle_as
from tripbook.payments.gateway import Approved, Declined

# Enough for every hold the fuzzer makes (each takes at most the server's maximum seats).
SEATS = 10_000
# Far enough out that a customer may still cancel a confirmed reservation.
DEPARTS_IN = timedelta(days=60)
# Holds the fuzzer may pay for or cancel: each succeeds once, then answers 409.
HOLDS = 6
# Refunds the provider refused: ops may retry each once, then it answers 409.
REFUSED_REFUNDS = 2


@dataclass(frozen=True, slots=True)
class FuzzWorld:
    customer: Account
    ops: Account
    trip_ids: list[int]
    departure_ids: list[int]
    reservation_ids: list[str]  # the customer's: held, paid and cancelled
    refund_ids: list[str]  # refused by the provider, so ops may retry them
    # Each listing's second page, as the API itself hands it out.
    cursors: dict[str, str]


async def seed(factories: Factories, client: httpx.AsyncClient) -> FuzzWorld:
    customer = await factories.account()
    ops = await factories.account("ops")
    # Two trips, so that the search has a second page.
    departures = [await factories.departure(seats=SEATS, departs_in=DEPARTS_IN) for _ in "ab"]
    departure_id = departures[0].id
    held = [await _hold(client, customer, departure_id) for _ in range(HOLDS)]
    paid = await _confirmed(client, factories, customer, departure_id)
    refunded = [
        await _refund_refused(client, factories, customer, departure_id)
        for _ in range(REFUSED_REFUNDS)
    ]
    refunds = [await open_payment(factories.sessionmaker, r, "refund") for r in refunded]
    return FuzzWorld(
        customer=customer,
        ops=ops,
        trip_ids=[departure.trip_id for departure in departures],
        departure_ids=[departure.id for departure in departures],
        reservation_ids=[*held, paid, *refunded],
        refund_ids=[str(refund.id) for refund in refunds],
        cursors={
            "GET /v1/trips": await _next_cursor(client, "/v1/trips", None),
            "GET /v1/reservations": await _next_cursor(client, "/v1/reservations", customer),
            "GET /v1/ops/refunds": await _next_cursor(client, "/v1/ops/refunds", ops),
        },
    )


async def _hold(client: httpx.AsyncClient, account: Account, departure_id: int) -> str:
    body = {"departure_id": departure_id, "seats": 1, "passengers": [{"full_name": "Ana"}]}
    held = await _call(client, "POST", "/v1/reservations", account, body, expect=201)
    return str(held["id"])


async def _confirmed(
    client: httpx.AsyncClient, factories: Factories, account: Account, departure_id: int
) -> str:
    """Paid and settled: it has a charge to read."""
    reservation_id = await _hold(client, account, departure_id)
    url = f"/v1/reservations/{reservation_id}/payment"
    await _call(client, "POST", url, account, {"payment_token": "tok_approve"}, expect=202)
    await settle_as(factories.sessionmaker, reservation_id, Approved(f"ch_{uuid.uuid4().hex}"))
    return reservation_id


async def _refund_refused(
    client: httpx.AsyncClient, factories: Factories, account: Account, departure_id: int
) -> str:
    """Paid, cancelled, and its refund refused by the provider: ops' retry has work to do."""
    reservation_id = await _confirmed(client, factories, account, departure_id)
    await _call(client, "POST", f"/v1/reservations/{reservation_id}/cancel", account, expect=200)
    await refund_as(factories.sessionmaker, reservation_id, Declined("refund_declined"))
    return reservation_id


async def _next_cursor(client: httpx.AsyncClient, url: str, account: Account | None) -> str:
    headers = account.headers if account else {}
    response = await client.get(url, params={"limit": 1}, headers=headers)
    assert response.status_code == 200, response.text
    cursor = response.json()["next_cursor"]
    assert isinstance(cursor, str), f"{url} has a single page"
    return cursor


async def _call(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    account: Account,
    body: dict[str, Any] | None = None,
    *,
    expect: int,
) -> dict[str, Any]:
    response = await client.request(method, url, json=body, headers=account.headers)
    assert response.status_code == expect, response.text
    answer: dict[str, Any] = response.json()
    return answer
