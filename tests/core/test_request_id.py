from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx


class TestRequestId:
    async def test_round_trips(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz", headers={"X-Request-ID": "trace-0123456789"})

        assert response.headers["x-request-id"] == "trace-0123456789"

    async def test_generated_when_absent(self, client: httpx.AsyncClient) -> None:
        first = await client.get("/healthz")
        second = await client.get("/healthz")

        assert re.fullmatch("[0-9a-f]{32}", first.headers["x-request-id"])
        assert re.fullmatch("[0-9a-f]{32}", second.headers["x-request-id"])
        assert first.headers["x-request-id"] != second.headers["x-request-id"]

    async def test_correlation_id_header_accepted(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz", headers={"X-Correlation-ID": "corr-abcdef-123"})

        assert response.headers["x-request-id"] == "corr-abcdef-123"

    async def test_malformed_is_replaced(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})

        assert re.fullmatch("[0-9a-f]{32}", response.headers["x-request-id"])

    async def test_in_every_log_line_of_the_request(
        self, client: httpx.AsyncClient, captured_logs: Callable[[], list[dict[str, Any]]]
    ) -> None:
        await client.get("/v1/trips/999999", headers={"X-Request-ID": "logged-request-42"})

        lines = [line for line in captured_logs() if line.get("request_id") == "logged-request-42"]
        access = [line for line in lines if line["event"] == "request"]
        assert len(access) == 1
        assert access[0] | {"duration_ms": 0} == access[0] | {
            "method": "GET",
            "path": "/v1/trips/{trip_id}",
            "status": 404,
            "duration_ms": 0,
        }
        assert isinstance(access[0]["duration_ms"], float)
