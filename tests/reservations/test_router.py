"""POST/GET /v1/reservations and cancel, through the HTTP API in-process."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.api import hold_body
from tests.support.factories import Account, Factories
from tests.support.problems import assert_problem
from tripbook.settings import Settings
from tripbook.users.models import User


@pytest.fixture
async def customer(factories: Factories) -> Account:
    return await factories.account()


class TestHoldSeats:
    async def test_holds_and_prices(
        self, client: httpx.AsyncClient, factories: Factories, customer: Account, settings: Settings
    ) -> None:
        departure = await factories.departure(seats=10, price=2500)

        response = await client.post(
            "/v1/reservations", json=hold_body(departure.id, 3), headers=customer.headers
        )

        assert response.status_code == 201
        body = response.json()
        assert body["status"] == "held"
        assert body["total"] == {"amount": 7500, "currency": "EUR"}
        assert [p["full_name"] for p in body["passengers"]] == [
            "Passenger 0",
            "Passenger 1",
            "Passenger 2",
        ]
        assert await factories.seats_available(departure.id) == 7
        [reservation] = await factories.reservations(departure.id)
        assert str(reservation.id) == body["id"]
        assert reservation.expires_at - reservation.created_at == timedelta(
            seconds=settings.hold_ttl_s
        )

    async def test_anonymous(self, client: httpx.AsyncClient, factories: Factories) -> None:
        departure = await factories.departure()

        response = await client.post("/v1/reservations", json=hold_body(departure.id))

        assert assert_problem(response, 401)["code"] == "UNAUTHENTICATED"
        assert response.headers["www-authenticate"] == "Bearer"  # no token: no error code
        assert await factories.seats_available(departure.id) == 50

    async def test_sold_out(
        self, client: httpx.AsyncClient, factories: Factories, customer: Account
    ) -> None:
        departure = await factories.departure(seats=3)
        first = await client.post(
            "/v1/reservations", json=hold_body(departure.id, 2), headers=customer.headers
        )

        second = await client.post(
            "/v1/reservations", json=hold_body(departure.id, 2), headers=customer.headers
        )

        assert first.status_code == 201
        body = assert_problem(second, 409)
        assert body["code"] == "SEATS_UNAVAILABLE"
        assert body["context"]["available"] == 1
        assert await factories.seats_available(departure.id) == 1
        assert len(await factories.reservations(departure.id)) == 1

    async def test_departure_already_left(
        self, client: httpx.AsyncClient, factories: Factories, customer: Account
    ) -> None:
        departure = await factories.departure(departs_in=timedelta(hours=-1))

        response = await client.post(
            "/v1/reservations", json=hold_body(departure.id), headers=customer.headers
        )

        assert assert_problem(response, 422)["code"] == "DEPARTURE_CLOSED"
        assert await factories.seats_available(departure.id) == 50

    @pytest.mark.parametrize("idempotency_key", [None, "deleted-user-key"])
    async def test_deleted_account_takes_no_seats(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        sessionmaker: async_sessionmaker[AsyncSession],
        idempotency_key: str | None,
    ) -> None:
        """The hold checks the account in its own statement: a valid token is not enough."""
        departure = await factories.departure(seats=10)
        gone = await factories.account()
        async with sessionmaker() as session, session.begin():
            await session.execute(delete(User).where(User.id == gone.id))
        headers = {
            **gone.headers,
            **({"Idempotency-Key": idempotency_key} if idempotency_key else {}),
        }

        response = await client.post(
            "/v1/reservations", json=hold_body(departure.id), headers=headers
        )

        assert assert_problem(response, 401)["code"] == "INVALID_TOKEN"
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert await factories.seats_available(departure.id) == 10
        assert await factories.reservations(departure.id) == []

    async def test_unknown_departure(self, client: httpx.AsyncClient, customer: Account) -> None:
        response = await client.post(
            "/v1/reservations", json=hold_body(2**62), headers=customer.headers
        )

        assert assert_problem(response, 404)["code"] == "DEPARTURE_NOT_FOUND"

    async def test_above_the_maximum_seats(
        self, client: httpx.AsyncClient, factories: Factories, customer: Account, settings: Settings
    ) -> None:
        departure = await factories.departure()
        seats = settings.max_seats_per_reservation + 1

        response = await client.post(
            "/v1/reservations", json=hold_body(departure.id, seats), headers=customer.headers
        )

        assert assert_problem(response, 422)["code"] == "TOO_MANY_SEATS"
        assert await factories.seats_available(departure.id) == 50

    async def test_passengers_must_match_seats(
        self, client: httpx.AsyncClient, factories: Factories, customer: Account
    ) -> None:
        departure = await factories.departure()
        body = hold_body(departure.id, 2) | {"seats": 3}

        response = await client.post("/v1/reservations", json=body, headers=customer.headers)

        assert assert_problem(response, 422)["code"] == "INVALID_PASSENGERS"

    @pytest.mark.parametrize(
        "body",
        [
            {"departure_id": 1, "seats": 0, "passengers": []},
            {"departure_id": 1, "seats": -1, "passengers": [{"full_name": "A"}]},
            {"departure_id": "one", "seats": 1, "passengers": [{"full_name": "A"}]},
            {"departure_id": 2**64, "seats": 1, "passengers": [{"full_name": "A"}]},
            {"departure_id": 1, "seats": 1.5, "passengers": [{"full_name": "A"}]},
            {"departure_id": 1, "seats": 1, "passengers": [{"full_name": ""}]},
            {"departure_id": 1, "seats": 1, "passengers": [{"full_name": "A" * 201}]},
            {"departure_id": 1, "seats": 1, "passengers": [{"full_name": "A"}], "price": 0},
            {"departure_id": 1, "seats": 1},
            [],
            "null",
        ],
    )
    async def test_malformed_bodies_are_422(
        self, client: httpx.AsyncClient, customer: Account, body: Any
    ) -> None:
        response = await client.post("/v1/reservations", json=body, headers=customer.headers)

        assert assert_problem(response, 422)["code"] == "VALIDATION_ERROR"

    async def test_invalid_json_is_422(self, client: httpx.AsyncClient, customer: Account) -> None:
        response = await client.post(
            "/v1/reservations",
            content=b'{"departure_id": 1,',
            headers={**customer.headers, "content-type": "application/json"},
        )

        assert assert_problem(response, 422)["code"] == "VALIDATION_ERROR"

    @pytest.mark.parametrize(
        "token",
        [
            "not-a-jwt",
            jwt.encode({"sub": "1", "role": "ops", "exp": 4102444800}, "another-key-" * 4),
            jwt.encode({"sub": "1", "role": "ops", "exp": 4102444800}, None, algorithm="none"),
        ],
    )
    async def test_bad_tokens_are_401(
        self, client: httpx.AsyncClient, factories: Factories, token: str
    ) -> None:
        departure = await factories.departure()

        response = await client.post(
            "/v1/reservations",
            json=hold_body(departure.id),
            headers={"Authorization": f"Bearer {token}"},
        )

        assert assert_problem(response, 401)["code"] == "INVALID_TOKEN"
        assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        assert await factories.seats_available(departure.id) == 50

    async def test_expired_token_is_401(
        self, client: httpx.AsyncClient, customer: Account, settings: Settings
    ) -> None:
        expired = jwt.encode(
            {"sub": str(customer.id), "role": "customer", "exp": 1_600_000_000},
            settings.jwt_secret.get_secret_value(),
            algorithm="HS256",
        )

        response = await client.get(
            "/v1/reservations", headers={"Authorization": f"Bearer {expired}"}
        )

        problem = assert_problem(response, 401)
        assert (problem["code"], problem["detail"]) == ("TOKEN_EXPIRED", "Token expired")
        assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


class TestIdempotency:
    async def test_replay_returns_the_stored_response(
        self, client: httpx.AsyncClient, factories: Factories, customer: Account
    ) -> None:
        departure = await factories.departure(seats=10, price=1200)
        headers = {**customer.headers, "Idempotency-Key": str(uuid.uuid4())}

        first = await client.post("/v1/reservations", json=hold_body(departure.id), headers=headers)
        assert first.json()["total"] == {"amount": 2400, "currency": "EUR"}
        second = await client.post(
            "/v1/reservations", json=hold_body(departure.id), headers=headers
        )

        assert (first.status_code, second.status_code) == (201, 201)
        assert second.json() == first.json()
        assert second.headers["idempotent-replayed"] == "true"
        assert await factories.seats_available(departure.id) == 8
        assert len(await factories.reservations(departure.id)) == 1

    async def test_same_key_different_body_is_422(
        self, client: httpx.AsyncClient, factories: Factories, customer: Account
    ) -> None:
        departure = await factories.departure(seats=10)
        headers = {**customer.headers, "Idempotency-Key": str(uuid.uuid4())}
        await client.post("/v1/reservations", json=hold_body(departure.id, 2), headers=headers)

        response = await client.post(
            "/v1/reservations", json=hold_body(departure.id, 1), headers=headers
        )

        assert assert_problem(response, 422)["code"] == "IDEMPOTENCY_KEY_REUSED"
        assert await factories.seats_available(departure.id) == 8

    async def test_keys_are_per_user(
        self, client: httpx.AsyncClient, factories: Factories, customer: Account
    ) -> None:
        other = await factories.account()
        departure = await factories.departure(seats=10)
        key = str(uuid.uuid4())

        mine = await client.post(
            "/v1/reservations",
            json=hold_body(departure.id),
            headers={**customer.headers, "Idempotency-Key": key},
        )
        theirs = await client.post(
            "/v1/reservations",
            json=hold_body(departure.id),
            headers={**other.headers, "Idempotency-Key": key},
        )

        assert mine.json()["id"] != theirs.json()["id"]
        assert await factories.seats_available(departure.id) == 6

    async def test_failed_request_releases_the_key(
        self, client: httpx.AsyncClient, factories: Factories, customer: Account
    ) -> None:
        departure = await factories.departure(seats=1)
        headers = {**customer.headers, "Idempotency-Key": str(uuid.uuid4())}
        refused = await client.post(
            "/v1/reservations", json=hold_body(departure.id, 2), headers=headers
        )

        retried = await client.post(
            "/v1/reservations", json=hold_body(departure.id, 2), headers=headers
        )

        assert assert_problem(refused, 409)["code"] == "SEATS_UNAVAILABLE"
        assert assert_problem(retried, 409)["code"] == "SEATS_UNAVAILABLE"  # tried again

    async def test_key_longer_than_255_is_422(
        self, client: httpx.AsyncClient, factories: Factories, customer: Account
    ) -> None:
        departure = await factories.departure()

        response = await client.post(
            "/v1/reservations",
            json=hold_body(departure.id),
            headers={**customer.headers, "Idempotency-Key": "k" * 256},
        )

        assert assert_problem(response, 422)["code"] == "VALIDATION_ERROR"
        assert await factories.seats_available(departure.id) == 50


class TestReadReservations:
    async def test_get_own(
        self, client: httpx.AsyncClient, factories: Factories, customer: Account
    ) -> None:
        departure = await factories.departure()
        created = await client.post(
            "/v1/reservations", json=hold_body(departure.id), headers=customer.headers
        )

        response = await client.get(
            f"/v1/reservations/{created.json()['id']}", headers=customer.headers
        )

        assert response.status_code == 200
        assert response.json() == created.json()

    async def test_other_users_reservation_is_404(
        self, client: httpx.AsyncClient, factories: Factories, customer: Account
    ) -> None:
        departure = await factories.departure()
        created = await client.post(
            "/v1/reservations", json=hold_body(departure.id), headers=customer.headers
        )
        stranger = await factories.account()

        read = await client.get(
            f"/v1/reservations/{created.json()['id']}", headers=stranger.headers
        )
        cancel = await client.post(
            f"/v1/reservations/{created.json()['id']}/cancel", headers=stranger.headers
        )

        assert assert_problem(read, 404)["code"] == "RESERVATION_NOT_FOUND"
        assert assert_problem(cancel, 404)["code"] == "RESERVATION_NOT_FOUND"
        assert await factories.seats_available(departure.id) == 48

    async def test_ops_sees_any(
        self, client: httpx.AsyncClient, factories: Factories, customer: Account
    ) -> None:
        departure = await factories.departure()
        created = await client.post(
            "/v1/reservations", json=hold_body(departure.id), headers=customer.headers
        )
        ops = await factories.account("ops")

        response = await client.get(f"/v1/reservations/{created.json()['id']}", headers=ops.headers)

        assert response.status_code == 200
        assert response.json() == created.json()  # the customer's, as the customer sees it

    async def test_unknown_id_is_404(self, client: httpx.AsyncClient, customer: Account) -> None:
        reservation_id = str(uuid.uuid4())

        response = await client.get(f"/v1/reservations/{reservation_id}", headers=customer.headers)

        body = assert_problem(response, 404)
        assert body["code"] == "RESERVATION_NOT_FOUND"
        assert body["context"] == {"reservation_id": reservation_id}

    @pytest.mark.parametrize("reservation_id", ["nope", "123", "0" * 31, str(uuid.uuid4()) + "0"])
    async def test_malformed_id_is_422(
        self, client: httpx.AsyncClient, customer: Account, reservation_id: str
    ) -> None:
        response = await client.get(f"/v1/reservations/{reservation_id}", headers=customer.headers)

        body = assert_problem(response, 422)
        assert body["code"] == "VALIDATION_ERROR"
        assert [error["loc"] for error in body["errors"]] == [["path", "reservation_id"]]

    async def test_list_is_own_paginated_and_filtered(
        self, client: httpx.AsyncClient, factories: Factories
    ) -> None:
        owner, stranger = await factories.account(), await factories.account()
        departure = await factories.departure()
        created = [
            (
                await client.post(
                    "/v1/reservations", json=hold_body(departure.id, 1), headers=owner.headers
                )
            ).json()["id"]
            for _ in range(5)
        ]
        await client.post(
            "/v1/reservations", json=hold_body(departure.id, 1), headers=stranger.headers
        )
        await client.post(f"/v1/reservations/{created[0]}/cancel", headers=owner.headers)

        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            page = (
                await client.get("/v1/reservations", params=params, headers=owner.headers)
            ).json()
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        cancelled = await client.get(
            "/v1/reservations", params={"status": "cancelled"}, headers=owner.headers
        )

        assert seen == list(reversed(created))
        assert [item["id"] for item in cancelled.json()["items"]] == [created[0]]

    async def test_malformed_cursor_is_422(
        self, client: httpx.AsyncClient, customer: Account
    ) -> None:
        response = await client.get(
            "/v1/reservations", params={"cursor": "!!!"}, headers=customer.headers
        )

        assert assert_problem(response, 422)["code"] == "INVALID_INPUT"


class TestCancel:
    async def test_releases_the_seats(
        self, client: httpx.AsyncClient, factories: Factories, customer: Account
    ) -> None:
        departure = await factories.departure(seats=10)
        created = await client.post(
            "/v1/reservations", json=hold_body(departure.id, 3), headers=customer.headers
        )

        response = await client.post(
            f"/v1/reservations/{created.json()['id']}/cancel", headers=customer.headers
        )

        assert response.status_code == 200
        assert response.json()["status"] == "cancelled"
        assert await factories.seats_available(departure.id) == 10

    async def test_twice_is_409_and_releases_once(
        self, client: httpx.AsyncClient, factories: Factories, customer: Account
    ) -> None:
        departure = await factories.departure(seats=10)
        created = await client.post(
            "/v1/reservations", json=hold_body(departure.id, 3), headers=customer.headers
        )
        url = f"/v1/reservations/{created.json()['id']}/cancel"
        await client.post(url, headers=customer.headers)

        again = await client.post(url, headers=customer.headers)

        assert assert_problem(again, 409)["code"] == "INVALID_RESERVATION_STATE"
        assert await factories.seats_available(departure.id) == 10

    async def test_ops_may_cancel_any(
        self, client: httpx.AsyncClient, factories: Factories, customer: Account
    ) -> None:
        departure = await factories.departure(seats=10)
        created = await client.post(
            "/v1/reservations", json=hold_body(departure.id, 3), headers=customer.headers
        )
        ops = await factories.account("ops")

        response = await client.post(
            f"/v1/reservations/{created.json()['id']}/cancel", headers=ops.headers
        )

        assert response.json()["status"] == "cancelled"
        assert await factories.seats_available(departure.id) == 10
