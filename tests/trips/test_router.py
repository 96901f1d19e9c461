"""The trip catalogue: search, detail (cached), and ops-only creation, in-process."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests import environment
from tests.support.apps import serving
from tests.support.factories import Account, Factories, in_days
from tests.support.problems import assert_problem
from tests.support.sandboxes import closed_port
from tripbook.core.db import unit_of_work
from tripbook.settings import Settings
from tripbook.trips.models import Departure, Trip

# (days from now, seats, price) for each departure of a trip made by ``make_trip``.
Schedule = Sequence[tuple[float, int, int]]


def unique_place(prefix: str = "Origin") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def make_trip(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    origin: str,
    destination: str = "Porto",
    schedule: Schedule = ((7, 50, 2500),),
    currency: str = "EUR",
) -> tuple[int, list[int]]:
    """A trip and its departures written straight to the database: (trip id, departure ids)."""
    async with unit_of_work(sessionmaker) as session:
        trip = Trip(origin=origin, destination=destination, title="Coastal line", currency=currency)
        session.add(trip)
        await session.flush()
        departures = [
            Departure(
                trip_id=trip.id,
                departs_at=in_days(days),
                arrives_at=in_days(days) + timedelta(hours=3),
                price=price,
                seats_total=seats,
                seats_available=seats,
            )
            for days, seats, price in schedule
        ]
        session.add_all(departures)
        await session.flush()
        return trip.id, [departure.id for departure in departures]


async def set_seats_available(
    sessionmaker: async_sessionmaker[AsyncSession], departure_id: int, seats: int
) -> None:
    """Change inventory behind the API's back: no cache invalidation."""
    async with unit_of_work(sessionmaker) as session:
        await session.execute(
            update(Departure).where(Departure.id == departure_id).values(seats_available=seats)
        )


async def search(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/trips", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def encoded(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@asynccontextmanager
async def serve(settings: Settings, **changes: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An app of its own (own Redis key space) with some settings changed."""
    prefix = environment.own_key_prefix("trips")
    async with serving(settings, redis_key_prefix=prefix, **changes) as served:
        yield served.client


@pytest.fixture(scope="module")
async def ops(factories: Factories) -> Account:
    return await factories.account("ops")


@pytest.fixture(scope="module")
async def customer(factories: Factories) -> Account:
    return await factories.account()


class TestSearchTrips:
    async def test_matches_places_case_insensitively(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        origin = unique_place()
        porto, _ = await make_trip(sessionmaker, origin=origin, destination="Porto")
        await make_trip(sessionmaker, origin=origin, destination="Faro")
        await make_trip(sessionmaker, origin=unique_place(), destination="Porto")

        body = await search(client, origin=origin.upper(), destination="pOrTo")

        assert [item["id"] for item in body["items"]] == [porto]
        assert body["next_cursor"] is None

    async def test_summary_shape(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        origin = unique_place()
        trip_id, _ = await make_trip(
            sessionmaker, origin=origin, schedule=[(9, 10, 4000), (3, 10, 5500)], currency="GBP"
        )

        [item] = (await search(client, origin=origin))["items"]

        assert item | {"next_departure_at": None} == {
            "id": trip_id,
            "origin": origin,
            "destination": "Porto",
            "title": "Coastal line",
            "currency": "GBP",
            "next_departure_at": None,
            "from_price": {"amount": 4000, "currency": "GBP"},
        }
        next_at = datetime.fromisoformat(item["next_departure_at"])
        assert abs(next_at - in_days(3)) < timedelta(minutes=5)

    async def test_departure_window(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        origin = unique_place()
        await make_trip(sessionmaker, origin=origin, schedule=[(2, 10, 1000), (10, 10, 3000)])

        later = await search(client, origin=origin, departs_after=in_days(5).isoformat())
        sooner = await search(client, origin=origin, departs_before=in_days(5).isoformat())
        between = await search(
            client,
            origin=origin,
            departs_after=in_days(3).isoformat(),
            departs_before=in_days(9).isoformat(),
        )

        assert [item["from_price"]["amount"] for item in later["items"]] == [3000]
        assert [item["from_price"]["amount"] for item in sooner["items"]] == [1000]
        assert between["items"] == []

    async def test_offsets_other_than_utc(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        origin = unique_place()
        await make_trip(sessionmaker, origin=origin, schedule=[(2, 10, 1000)])
        after = in_days(2) - timedelta(hours=1)
        plus_five = after.astimezone(timezone(timedelta(hours=5))).isoformat()

        body = await search(client, origin=origin, departs_after=plus_five)

        assert len(body["items"]) == 1

    async def test_min_seats(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        origin = unique_place()
        roomy, _ = await make_trip(
            sessionmaker, origin=origin, schedule=[(1, 2, 1000), (4, 8, 2000)]
        )
        full, [departure] = await make_trip(sessionmaker, origin=origin, schedule=[(1, 9, 1000)])
        await set_seats_available(sessionmaker, departure, 4)

        body = await search(client, origin=origin, min_seats=5)

        [item] = body["items"]
        assert item["id"] == roomy
        assert item["from_price"] == {"amount": 2000, "currency": "EUR"}
        assert full not in [item["id"] for item in body["items"]]

    async def test_only_upcoming_departures_count(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        origin = unique_place()
        await make_trip(sessionmaker, origin=origin, schedule=[(-1, 10, 100)])
        mixed, _ = await make_trip(
            sessionmaker, origin=origin, schedule=[(-1, 10, 100), (2, 10, 900)]
        )

        body = await search(client, origin=origin)

        [item] = body["items"]
        assert item["id"] == mixed
        assert item["from_price"]["amount"] == 900

    async def test_departs_after_in_the_past_still_hides_departed(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        origin = unique_place()
        await make_trip(sessionmaker, origin=origin, schedule=[(-1, 10, 100)])
        mixed, _ = await make_trip(
            sessionmaker, origin=origin, schedule=[(-1, 10, 100), (2, 10, 900)]
        )

        body = await search(client, origin=origin, departs_after=in_days(-3).isoformat())

        assert [(item["id"], item["from_price"]["amount"]) for item in body["items"]] == [
            (mixed, 900)
        ]

    async def test_pages_are_complete_and_stable(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        origin = unique_place()
        created = [(await make_trip(sessionmaker, origin=origin))[0] for _ in range(5)]

        seen: list[int] = []
        pages = 0
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"origin": origin, "limit": 2}
            if cursor:
                params["cursor"] = cursor
            body = await search(client, **params)
            pages += 1
            assert len(body["items"]) <= 2
            seen += [item["id"] for item in body["items"]]
            if pages == 1:  # a trip added mid-walk lands after the cursor, never twice
                created.append((await make_trip(sessionmaker, origin=origin))[0])
            cursor = body["next_cursor"]
            if cursor is None:
                break
            assert pages < 10

        assert seen == sorted(created)
        assert pages == 3

    async def test_last_full_page_has_no_cursor(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        origin = unique_place()
        for _ in range(2):
            await make_trip(sessionmaker, origin=origin)

        body = await search(client, origin=origin, limit=2)

        assert len(body["items"]) == 2
        assert body["next_cursor"] is None

    @pytest.mark.parametrize(
        "cursor",
        [
            pytest.param("!!!not base64!!!", id="not-base64"),
            pytest.param(encoded(b"not json"), id="not-json"),
            pytest.param(encoded(b"\xff\xfe"), id="not-utf8"),
            pytest.param(encoded(b'{"id": 1}'), id="object"),
            pytest.param(encoded(b"[1, 2]"), id="wrong-arity"),
            pytest.param(encoded(b'["abc"]'), id="string-id"),
            pytest.param(encoded(b"[null]"), id="null-id"),
            pytest.param(encoded(b"[1.5]"), id="float-id"),
            pytest.param(encoded(b"[1e400]"), id="infinite-id"),
            pytest.param(encoded(b"[true]"), id="boolean-id"),
            pytest.param(encoded(str([2**64]).encode()), id="beyond-bigint"),
            pytest.param(encoded(b"[0]"), id="zero-id"),
        ],
    )
    async def test_malformed_cursor_is_422(self, client: httpx.AsyncClient, cursor: str) -> None:
        response = await client.get("/v1/trips", params={"cursor": cursor})

        body = assert_problem(response, 422)
        assert (body["code"], body["context"]) == ("INVALID_INPUT", {"field": "cursor"})
        # The same errors[] shape as any other validation error.
        assert body["errors"] == [
            {"loc": ["query", "cursor"], "msg": "Malformed cursor", "type": "value_error"}
        ]

    async def test_overlong_cursor_is_422(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/trips", params={"cursor": "A" * 513})

        body = assert_problem(response, 422)
        assert body["errors"][0]["loc"] == ["query", "cursor"]

    @pytest.mark.parametrize("limit", ["0", "101", "x", "-1", "2.5"])
    async def test_invalid_limit_is_422(self, client: httpx.AsyncClient, limit: str) -> None:
        body = assert_problem(await client.get("/v1/trips", params={"limit": limit}), 422)

        assert body["code"] == "VALIDATION_ERROR"
        assert body["errors"][0]["loc"] == ["query", "limit"]

    @pytest.mark.parametrize("name", ["departs_after", "departs_before"])
    @pytest.mark.parametrize(
        "value",
        [
            "2030-01-01T10:00:00",
            "2030-02-30",
            "2030-1-1",
            "tomorrow",
            "2030-13-01T10:00:00Z",
            "0.5",
        ],
    )
    async def test_naive_or_malformed_time_is_422(
        self, client: httpx.AsyncClient, name: str, value: str
    ) -> None:
        body = assert_problem(await client.get("/v1/trips", params={name: value}), 422)

        assert body["errors"][0]["loc"] == ["query", name]

    @pytest.mark.parametrize("gap", [timedelta(0), timedelta(hours=-1)])
    async def test_an_empty_window_is_422(self, client: httpx.AsyncClient, gap: timedelta) -> None:
        after = in_days(3)
        params = {"departs_after": after.isoformat(), "departs_before": (after + gap).isoformat()}

        body = assert_problem(await client.get("/v1/trips", params=params), 422)

        assert body["code"] == "VALIDATION_ERROR"
        assert body["errors"] == [
            {
                "loc": ["query", "departs_after"],
                "msg": "must be earlier than departs_before",
                "type": "value_error",
            }
        ]

    async def test_a_date_alone_is_midnight_utc(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        origin = unique_place()
        trip_id, _ = await make_trip(sessionmaker, origin=origin, schedule=[(5, 10, 2500)])
        day = in_days(5).astimezone(UTC).date()
        next_day = day + timedelta(days=1)

        same_day = await search(client, origin=origin, departs_after=day.isoformat())
        from_next_day = await search(client, origin=origin, departs_after=next_day.isoformat())
        before_next_day = await search(client, origin=origin, departs_before=next_day.isoformat())
        before_the_day = await search(client, origin=origin, departs_before=day.isoformat())

        assert [item["id"] for item in same_day["items"]] == [trip_id]
        assert from_next_day["items"] == []
        assert [item["id"] for item in before_next_day["items"]] == [trip_id]
        assert before_the_day["items"] == []

    @pytest.mark.parametrize("min_seats", ["0", "-3", "101", "many"])
    async def test_invalid_min_seats_is_422(
        self, client: httpx.AsyncClient, min_seats: str
    ) -> None:
        assert_problem(await client.get("/v1/trips", params={"min_seats": min_seats}), 422)


class TestGetTrip:
    async def test_upcoming_departures_with_live_seats_and_price(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        trip_id, [_, later, sooner] = await make_trip(
            sessionmaker,
            origin=unique_place(),
            schedule=[(-1, 10, 100), (8, 40, 4200), (2, 20, 1900)],
        )
        await set_seats_available(sessionmaker, sooner, 13)

        response = await client.get(f"/v1/trips/{trip_id}")

        assert response.status_code == 200
        body = response.json()
        assert body["id"] == trip_id
        assert [
            (d["id"], d["seats_total"], d["seats_available"], d["price"])
            for d in body["departures"]
        ] == [
            (sooner, 20, 13, {"amount": 1900, "currency": "EUR"}),
            (later, 40, 40, {"amount": 4200, "currency": "EUR"}),
        ]
        departs_at = datetime.fromisoformat(body["departures"][0]["departs_at"])
        assert departs_at.utcoffset() is not None

    async def test_unknown_trip(self, client: httpx.AsyncClient) -> None:
        body = assert_problem(await client.get(f"/v1/trips/{2**63 - 1}"), 404)

        assert body["code"] == "TRIP_NOT_FOUND"

    @pytest.mark.parametrize("trip_id", ["0", "-1", str(2**63), str(2**64), "abc", "1.5", "1e3"])
    async def test_impossible_id_is_422(self, client: httpx.AsyncClient, trip_id: str) -> None:
        body = assert_problem(await client.get(f"/v1/trips/{trip_id}"), 422)

        assert body["errors"][0]["loc"] == ["path", "trip_id"]


class TestTripCache:
    async def test_detail_is_served_from_redis(
        self,
        settings: Settings,
        factories: Factories,
        sessionmaker: async_sessionmaker[AsyncSession],
        customer: Account,
    ) -> None:
        departure = await factories.departure(seats=10)
        async with serve(settings, trip_cache_ttl_s=300) as client:
            first = await client.get(f"/v1/trips/{departure.trip_id}")
            await set_seats_available(sessionmaker, departure.id, 4)
            stale = await client.get(f"/v1/trips/{departure.trip_id}")
            hold = await client.post(
                "/v1/reservations",
                json={"departure_id": departure.id, "seats": 1, "passengers": [{"full_name": "A"}]},
                headers=customer.headers,
            )
            fresh = await client.get(f"/v1/trips/{departure.trip_id}")

        assert first.json()["departures"][0]["seats_available"] == 10
        assert stale.content == first.content
        assert hold.status_code == 201, hold.text
        assert fresh.json()["departures"][0]["seats_available"] == 3

    async def test_new_departure_invalidates_it(
        self,
        settings: Settings,
        factories: Factories,
        ops: Account,
    ) -> None:
        departure = await factories.departure()
        async with serve(settings, trip_cache_ttl_s=300) as client:
            before = await client.get(f"/v1/trips/{departure.trip_id}")
            added = await client.post(
                f"/v1/trips/{departure.trip_id}/departures",
                json=departure_body(days=20),
                headers=ops.headers,
            )
            after = await client.get(f"/v1/trips/{departure.trip_id}")

        assert len(before.json()["departures"]) == 1
        assert added.status_code == 201
        assert [d["id"] for d in after.json()["departures"]] == [departure.id, added.json()["id"]]

    async def test_redis_down_answers_from_the_database(
        self, settings: Settings, factories: Factories
    ) -> None:
        departure = await factories.departure(seats=7)
        async with serve(settings, redis_url=f"redis://127.0.0.1:{closed_port()}/0") as client:
            responses = [await client.get(f"/v1/trips/{departure.trip_id}") for _ in range(2)]

        for response in responses:
            assert response.status_code == 200
            assert response.json()["departures"][0]["seats_available"] == 7


def trip_body(**overrides: Any) -> dict[str, Any]:
    return {
        "origin": unique_place(),
        "destination": "Porto",
        "title": "Douro valley by train",
        "description": "Scenic.",
        "currency": "EUR",
    } | overrides


def departure_body(days: float = 14, **overrides: Any) -> dict[str, Any]:
    departs_at = in_days(days)
    return {
        "departs_at": departs_at.isoformat(),
        "arrives_at": (departs_at + timedelta(hours=4)).isoformat(),
        "price": 3900,
        "seats_total": 30,
    } | overrides


class TestCreateTrip:
    async def test_ops_creates(self, client: httpx.AsyncClient, ops: Account) -> None:
        body = trip_body(currency="CHF")

        response = await client.post("/v1/trips", json=body, headers=ops.headers)

        assert response.status_code == 201
        created = response.json()
        assert created == body | {"id": created["id"], "departures": []}
        detail = await client.get(f"/v1/trips/{created['id']}")
        assert detail.json() == created

    async def test_customer_is_403(self, client: httpx.AsyncClient, customer: Account) -> None:
        body = trip_body()

        response = await client.post("/v1/trips", json=body, headers=customer.headers)

        assert assert_problem(response, 403)["code"] == "PERMISSION_DENIED"
        assert (await search(client, origin=body["origin"]))["items"] == []

    async def test_anonymous(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.post("/v1/trips", json=trip_body()), 401)

    @pytest.mark.parametrize(
        "overrides",
        [
            pytest.param({"operator": "ACME"}, id="extra-field"),
            pytest.param({"title": ""}, id="blank-title"),
            pytest.param({"origin": "x" * 101}, id="origin-too-long"),
            pytest.param({"currency": "eur"}, id="currency-lowercase"),
            pytest.param({"currency": "EURO"}, id="currency-four-letters"),
            pytest.param({"destination": 7}, id="destination-number"),
        ],
    )
    async def test_invalid_body_is_422(
        self, client: httpx.AsyncClient, ops: Account, overrides: dict[str, Any]
    ) -> None:
        response = await client.post("/v1/trips", json=trip_body(**overrides), headers=ops.headers)

        assert assert_problem(response, 422)["code"] == "VALIDATION_ERROR"


class TestAddDeparture:
    @pytest.fixture
    async def trip_id(self, sessionmaker: async_sessionmaker[AsyncSession]) -> int:
        trip_id, _ = await make_trip(
            sessionmaker, origin=unique_place(), schedule=[], currency="GBP"
        )
        return trip_id

    async def test_ops_adds(self, client: httpx.AsyncClient, ops: Account, trip_id: int) -> None:
        body = departure_body(days=14)

        response = await client.post(
            f"/v1/trips/{trip_id}/departures", json=body, headers=ops.headers
        )

        assert response.status_code == 201
        created = response.json()
        assert created["trip_id"] == trip_id
        assert created["price"] == {"amount": 3900, "currency": "GBP"}
        assert (created["seats_total"], created["seats_available"]) == (30, 30)
        detail = (await client.get(f"/v1/trips/{trip_id}")).json()
        assert [d["id"] for d in detail["departures"]] == [created["id"]]
        assert datetime.fromisoformat(detail["departures"][0]["departs_at"]) == (
            datetime.fromisoformat(body["departs_at"])
        )

    async def test_customer_is_403(
        self, client: httpx.AsyncClient, customer: Account, trip_id: int
    ) -> None:
        response = await client.post(
            f"/v1/trips/{trip_id}/departures", json=departure_body(), headers=customer.headers
        )

        assert assert_problem(response, 403)["code"] == "PERMISSION_DENIED"
        assert (await client.get(f"/v1/trips/{trip_id}")).json()["departures"] == []

    async def test_anonymous(self, client: httpx.AsyncClient, trip_id: int) -> None:
        response = await client.post(f"/v1/trips/{trip_id}/departures", json=departure_body())

        assert_problem(response, 401)

    async def test_unknown_trip(self, client: httpx.AsyncClient, ops: Account) -> None:
        response = await client.post(
            f"/v1/trips/{2**63 - 1}/departures", json=departure_body(), headers=ops.headers
        )

        assert assert_problem(response, 404)["code"] == "TRIP_NOT_FOUND"

    async def test_departure_in_the_past(
        self, client: httpx.AsyncClient, ops: Account, trip_id: int
    ) -> None:
        response = await client.post(
            f"/v1/trips/{trip_id}/departures", json=departure_body(days=-1), headers=ops.headers
        )

        assert assert_problem(response, 422)["code"] == "INVALID_SCHEDULE"

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            pytest.param(
                {"arrives_at": in_days(13).isoformat()}, None, id="arrives-before-departs"
            ),
            pytest.param({"arrives_at": in_days(14).isoformat()}, None, id="arrives-as-departs"),
            pytest.param({"seats_total": 0}, "seats_total", id="no-seats"),
            pytest.param({"seats_total": 10_001}, "seats_total", id="too-many-seats"),
            pytest.param({"price": -1}, "price", id="negative-price"),
            pytest.param({"price": 12.5}, "price", id="fractional-price"),
            pytest.param({"seats_available": 3}, "seats_available", id="extra-field"),
            pytest.param(
                {"departs_at": "2031-01-01T10:00:00", "arrives_at": "2031-01-01T12:00:00"},
                "departs_at",
                id="naive-times",
            ),
        ],
    )
    async def test_invalid_body_is_422(
        self,
        client: httpx.AsyncClient,
        ops: Account,
        trip_id: int,
        overrides: dict[str, Any],
        field: str | None,
    ) -> None:
        body = departure_body(days=14) | overrides

        response = await client.post(
            f"/v1/trips/{trip_id}/departures", json=body, headers=ops.headers
        )

        problem = assert_problem(response, 422)
        assert problem["code"] == "VALIDATION_ERROR"
        if field is not None:
            assert ["body", field] in [error["loc"][:2] for error in problem["errors"]]
        assert (await client.get(f"/v1/trips/{trip_id}")).json()["departures"] == []
