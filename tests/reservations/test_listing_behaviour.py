"""``GET /v1/reservations``: ops list everyone's reservations, a customer only their own."""

from __future__ import annotations

from typing import Any

import httpx

from tests.support.factories import Account, Factories


async def hold(client: httpx.AsyncClient, account: Account, departure_id: int) -> str:
    response = await client.post(
        "/v1/reservations",
        json={"departure_id": departure_id, "seats": 1, "passengers": [{"full_name": "A"}]},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    reservation_id: str = response.json()["id"]
    return reservation_id


async def listed(
    client: httpx.AsyncClient, account: Account, *, until: set[str] | None = None, **params: Any
) -> list[str]:
    """The ids of the caller's listing, newest first: every page, or pages until all of
    ``until`` were seen (ops list the whole test database)."""
    ids: list[str] = []
    cursor = None
    while True:
        query = {"limit": 100, **params} | ({"cursor": cursor} if cursor else {})
        response = await client.get("/v1/reservations", params=query, headers=account.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        ids += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None or (until is not None and until <= set(ids)):
            return ids


class TestListing:
    async def test_ops_see_every_customers_reservations(
        self, client: httpx.AsyncClient, factories: Factories
    ) -> None:
        ana, rui = await factories.account(), await factories.account()
        ops = await factories.account("ops")
        departure = await factories.departure()
        anas = [await hold(client, ana, departure.id) for _ in range(2)]
        ruis = await hold(client, rui, departure.id)

        everyone = await listed(client, ops, until={*anas, ruis})

        assert {*anas, ruis} <= set(everyone)
        # Newest first across owners, as for a customer.
        positions = [everyone.index(r) for r in (ruis, anas[1], anas[0])]
        assert positions == sorted(positions)

    async def test_customers_see_only_their_own(
        self, client: httpx.AsyncClient, factories: Factories
    ) -> None:
        ana, rui = await factories.account(), await factories.account()
        departure = await factories.departure()
        anas = [await hold(client, ana, departure.id) for _ in range(2)]
        ruis = await hold(client, rui, departure.id)

        assert await listed(client, ana) == anas[::-1]
        assert await listed(client, rui) == [ruis]

    async def test_ops_filter_everyone_by_status(
        self, client: httpx.AsyncClient, factories: Factories
    ) -> None:
        ana, rui = await factories.account(), await factories.account()
        ops = await factories.account("ops")
        departure = await factories.departure()
        kept = await hold(client, ana, departure.id)
        cancelled = await hold(client, rui, departure.id)
        response = await client.post(f"/v1/reservations/{cancelled}/cancel", headers=rui.headers)
        assert response.status_code == 200, response.text

        cancelled_ids = set(await listed(client, ops, status="cancelled"))
        held_ids = set(await listed(client, ops, status="held"))

        assert cancelled in cancelled_ids
        assert kept not in cancelled_ids
        assert kept in held_ids
        assert cancelled not in held_ids
