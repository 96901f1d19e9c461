"""Requests of the HTTP API that many tests send: a seat hold's body, a login."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx


def hold_body(
    departure_id: int, seats: int = 2, *, names: Sequence[str] | None = None
) -> dict[str, Any]:
    """A hold of ``seats`` seats; ``names``: the passengers' (default "Passenger 0", ...)."""
    names = [f"Passenger {n}" for n in range(seats)] if names is None else list(names)
    return {
        "departure_id": departure_id,
        "seats": seats,
        "passengers": [{"full_name": name} for name in names],
    }


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/v1/auth/token", data={"username": email, "password": password})
