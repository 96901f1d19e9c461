from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tripbook.main import create_app
from tripbook.settings import Settings

PROBLEM_FIELDS = {"type", "title", "status", "detail", "code", "request_id"}


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert set(body) >= PROBLEM_FIELDS
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    return body


class TestProblemResponses:
    async def test_unknown_route_is_404(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/v1/nowhere"), 404)

    async def test_wrong_method_is_405(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.delete("/healthz"), 405)

    async def test_validation_error_is_422_with_errors(self, client: httpx.AsyncClient) -> None:
        body = assert_problem(await client.get("/v1/trips", params={"limit": "many"}), 422)

        assert body["code"] == "VALIDATION_ERROR"
        assert body["errors"][0]["loc"] == ["query", "limit"]

    async def test_domain_error_keeps_its_code(self, client: httpx.AsyncClient) -> None:
        body = assert_problem(await client.get("/v1/trips/987654321"), 404)

        assert body["code"] == "TRIP_NOT_FOUND"

    async def test_body_over_the_limit_is_413(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        oversized = b"{" + b" " * settings.max_body_bytes + b"}"
        response = await client.post(
            "/v1/auth/register", content=oversized, headers={"content-type": "application/json"}
        )

        assert_problem(response, 413)


class TestUnexpectedError:
    @pytest.fixture
    async def failing_client(self, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
        app: FastAPI = create_app(settings)

        @app.get("/boom")
        async def boom() -> None:
            raise RuntimeError("secret internals: SELECT password FROM user_account")

        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://t") as client,
        ):
            yield client

    async def test_500_is_problem_json_without_internals(
        self, failing_client: httpx.AsyncClient
    ) -> None:
        response = await failing_client.get("/boom", headers={"X-Request-ID": "boom-request-1"})

        body = assert_problem(response, 500)
        assert body["request_id"] == "boom-request-1"
        assert "secret" not in response.text
        assert "SELECT" not in response.text
        assert "Traceback" not in response.text
