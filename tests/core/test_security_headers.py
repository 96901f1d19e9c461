"""Security headers on every answer (errors included), CORS only for configured origins."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from tests.support.apps import serving
from tests.support.factories import Factories
from tests.support.servers import Gunicorn, run_gunicorn
from tripbook.settings import Settings

ORIGIN = "https://app.tripbook.example"
API_CSP = "default-src 'none'; frame-ancestors 'none'"


def assert_base_headers(response: httpx.Response) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"


def assert_api_headers(response: httpx.Response) -> None:
    assert_base_headers(response)
    assert response.headers["content-security-policy"] == API_CSP


@asynccontextmanager
async def serve(settings: Settings, **changes: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An app with ``/boom`` (an unexpected error) under the lifespan, and its client."""
    async with serving(settings, raise_app_exceptions=False, **changes) as served:

        @served.app.get("/boom")
        async def boom() -> None:
            raise RuntimeError("boom")

        @served.app.get("/v1/users/boom")
        async def user_boom() -> None:
            raise RuntimeError("boom")

        yield served.client


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(settings, cors_allow_origins=[ORIGIN]) as client:
        yield client


@pytest.fixture
async def production_api(production_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(production_settings) as client:
        yield client


class TestSecurityHeaders:
    async def test_on_a_trip_read_without_no_store(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/trips")

        assert response.status_code == 200
        assert_api_headers(response)
        assert "no-store" not in response.headers.get("cache-control", "")
        assert "strict-transport-security" not in response.headers

    async def test_on_the_callers_profile_with_no_store(
        self, api: httpx.AsyncClient, factories: Factories
    ) -> None:
        account = await factories.account()

        response = await api.get("/v1/users/me", headers=account.headers)

        assert response.status_code == 200
        assert_api_headers(response)
        assert response.headers["cache-control"] == "no-store"

    async def test_on_a_reservation_list_with_no_store(
        self, api: httpx.AsyncClient, factories: Factories
    ) -> None:
        account = await factories.account()

        response = await api.get("/v1/reservations", headers=account.headers)

        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"

    async def test_on_a_404(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/nowhere")

        assert response.status_code == 404
        assert_api_headers(response)

    async def test_on_a_401_for_reservations(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/reservations")

        assert response.status_code == 401
        assert_api_headers(response)
        assert response.headers["cache-control"] == "no-store"

    async def test_on_a_422_from_auth(self, api: httpx.AsyncClient) -> None:
        response = await api.post("/v1/auth/register", json={})

        assert response.status_code == 422
        assert_api_headers(response)
        assert response.headers["cache-control"] == "no-store"

    async def test_on_a_500(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/boom")

        assert response.status_code == 500
        assert response.headers["content-type"] == "application/problem+json"
        assert_api_headers(response)
        assert "strict-transport-security" not in response.headers

    async def test_on_a_500_under_users_with_no_store(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/users/boom")

        assert response.status_code == 500
        assert_api_headers(response)
        assert response.headers["cache-control"] == "no-store"

    async def test_docs_keep_their_scripts(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/docs")

        assert response.status_code == 200
        assert_base_headers(response)
        assert "content-security-policy" not in response.headers


class TestHsts:
    async def test_production_sends_hsts_on_success(
        self, production_api: httpx.AsyncClient
    ) -> None:
        response = await production_api.get("/healthz")

        assert response.status_code == 200
        assert response.headers["strict-transport-security"].startswith("max-age=")
        assert_api_headers(response)

    async def test_production_sends_hsts_on_a_500(self, production_api: httpx.AsyncClient) -> None:
        response = await production_api.get("/boom")

        assert response.status_code == 500
        assert response.headers["strict-transport-security"].startswith("max-age=")


class TestCors:
    async def test_preflight_from_an_allowed_origin(self, api: httpx.AsyncClient) -> None:
        response = await api.options(
            "/v1/reservations",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
            },
        )

        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in response.headers["access-control-allow-methods"]
        allowed = response.headers["access-control-allow-headers"].lower()
        for header in ("authorization", "content-type", "idempotency-key", "x-request-id"):
            assert header in allowed
        assert_base_headers(response)

    async def test_preflight_from_another_origin_is_refused(self, api: httpx.AsyncClient) -> None:
        response = await api.options(
            "/v1/reservations",
            headers={
                "Origin": "https://evil.example",
                "Access-Control-Request-Method": "POST",
            },
        )

        assert response.status_code == 400
        assert "access-control-allow-origin" not in response.headers

    async def test_simple_request_exposes_the_api_headers(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/trips", headers={"Origin": ORIGIN})

        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == ORIGIN
        exposed = response.headers["access-control-expose-headers"].lower()
        assert {"x-request-id", "retry-after", "idempotent-replayed"} <= {
            name.strip() for name in exposed.split(",")
        }

    async def test_no_origins_configured_means_no_cors(self, client: httpx.AsyncClient) -> None:
        response = await client.options(
            "/v1/reservations",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
        )

        assert response.status_code == 405
        assert "access-control-allow-origin" not in response.headers


class TestCorsSettings:
    def test_origins_from_a_comma_list(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TRIPBOOK_CORS_ALLOW_ORIGINS", f"{ORIGIN}, https://b.example")

        assert Settings().cors_allow_origins == [ORIGIN, "https://b.example"]

    def test_default_is_no_origins(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("TRIPBOOK_CORS_ALLOW_ORIGINS", raising=False)

        assert Settings().cors_allow_origins == []

    def test_production_refuses_a_wildcard(self) -> None:
        with pytest.raises(ValidationError, match="TRIPBOOK_CORS_ALLOW_ORIGINS"):
            Settings(env="production", jwt_secret="x" * 40, cors_allow_origins=["*"])

    def test_production_refuses_a_wildcard_among_origins(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TRIPBOOK_CORS_ALLOW_ORIGINS", f"{ORIGIN},*")

        with pytest.raises(ValidationError, match="TRIPBOOK_CORS_ALLOW_ORIGINS"):
            Settings(env="production", jwt_secret="x" * 40)

    def test_production_accepts_listed_origins(self) -> None:
        settings = Settings(env="production", jwt_secret="x" * 40, cors_allow_origins=[ORIGIN])

        assert settings.cors_allow_origins == [ORIGIN]

    def test_elsewhere_a_wildcard_is_allowed(self) -> None:
        assert Settings(env="test", cors_allow_origins=["*"]).cors_allow_origins == ["*"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    env = {"TRIPBOOK_CORS_ALLOW_ORIGINS": f"{ORIGIN},https://other.tripbook.example"}
    with run_gunicorn(tmp_path_factory.mktemp("headers"), workers=1, env=env) as running:
        yield running


@pytest.mark.slow
class TestUnderGunicorn:
    """The same answers from the real entry point, configured from the environment."""

    async def test_headers_and_cors(self, server: Gunicorn) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            found = await http.get("/v1/trips", headers={"Origin": ORIGIN})
            missing = await http.get("/v1/nowhere")
            preflight = await http.options(
                "/v1/auth/token",
                headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
            )
            refused = await http.options(
                "/v1/auth/token",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
            )

        assert found.status_code == 200
        assert_api_headers(found)
        assert found.headers["access-control-allow-origin"] == ORIGIN
        assert missing.status_code == 404
        assert_api_headers(missing)
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert preflight.headers["cache-control"] == "no-store"
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
