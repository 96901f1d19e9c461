"""Control characters never reach PostgreSQL (NUL in text was a 500): every text input
refuses them with a 422 problem, and the schema publishes the rule as a pattern."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.factories import Factories
from tests.support.problems import assert_problem

BAD = ["\x00", "a\x00b", "\x1b[31m", "line\nbreak", "\x7f", "\x85"]


@pytest.mark.parametrize("bad", BAD)
async def test_register_full_name(client: httpx.AsyncClient, bad: str) -> None:
    body = {"email": "ctl@example.com", "password": "s3cret-passw0rd", "full_name": bad}

    response = await client.post("/v1/auth/register", json=body)

    assert assert_problem(response, 422)["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("bad", BAD)
async def test_passenger_name(client: httpx.AsyncClient, factories: Factories, bad: str) -> None:
    account = await factories.account()
    departure = await factories.departure(seats=2)
    body = {"departure_id": departure.id, "seats": 1, "passengers": [{"full_name": bad}]}

    response = await client.post("/v1/reservations", json=body, headers=account.headers)

    assert assert_problem(response, 422)["code"] == "VALIDATION_ERROR"
    assert await factories.seats_available(departure.id) == 2


@pytest.mark.parametrize("field", ["title", "origin", "destination"])
async def test_trip_fields(client: httpx.AsyncClient, factories: Factories, field: str) -> None:
    ops = await factories.account("ops")
    body: dict[str, Any] = {"origin": "Lisbon", "destination": "Faro", "title": "Sun"}
    body[field] = "bad\x00"

    response = await client.post("/v1/trips", json=body, headers=ops.headers)

    assert assert_problem(response, 422)["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize("parameter", ["origin", "destination"])
async def test_search(client: httpx.AsyncClient, parameter: str) -> None:
    response = await client.get("/v1/trips", params={parameter: "Lis\x00bon"})

    assert assert_problem(response, 422)["code"] == "VALIDATION_ERROR"


async def test_the_schema_says_so(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/v1/openapi.json")).json()
    components = schema["components"]["schemas"]

    for model, field in [("UserCreate", "full_name"), ("PassengerIn", "full_name")]:
        pattern = components[model]["properties"][field]["pattern"]
        assert "\\x00-\\x1f" in pattern, (model, field)
