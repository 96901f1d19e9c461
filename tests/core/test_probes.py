from __future__ import annotations

import httpx

from tests.support.apps import serving
from tests.support.sandboxes import closed_port
from tripbook.main import create_app
from tripbook.settings import Settings


class TestHealthz:
    async def test_alive(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/healthz")

        assert response.status_code == 200
        assert response.json() == {"status": "ok"}


class TestRouteOrder:
    """Probes are matched first, the docs last: a request never walks routes it cannot hit
    before its own (each costs a regex match, an included router several)."""

    def test_probes_first_and_docs_after_the_api(self, settings: Settings) -> None:
        routes = create_app(settings).router.routes
        paths = [getattr(route, "path", None) for route in routes]

        assert paths[:3] == ["/healthz", "/readyz", "/metrics"]
        assert paths[-3:] == ["/v1/openapi.json", "/docs", "/docs/oauth2-redirect"]

    async def test_schema_and_docs_still_served(self, client: httpx.AsyncClient) -> None:
        schema = await client.get("/v1/openapi.json")
        docs = await client.get("/docs")

        assert schema.status_code == 200
        assert "/v1/reservations" in schema.json()["paths"]
        assert not {"/healthz", "/readyz", "/metrics"} & set(schema.json()["paths"])
        assert docs.status_code == 200
        assert "/v1/openapi.json" in docs.text

    async def test_no_docs_in_production(self, production_settings: Settings) -> None:
        async with serving(production_settings) as served:
            docs = await served.client.get("/docs")
            schema = await served.client.get("/v1/openapi.json")

        assert docs.status_code == 404
        assert schema.status_code == 200


class TestReadyz:
    async def test_ready_with_database_and_redis(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/readyz")

        assert response.status_code == 200
        assert response.json() == {"status": "ok"}  # both checks ran and passed

    async def test_names_the_database_when_it_is_down(self, settings: Settings) -> None:
        async with serving(
            settings,
            database_url=f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/x",
            readiness_timeout_s=2.0,
        ) as served:
            response = await served.client.get("/readyz")

        assert response.status_code == 503
        body = response.json()
        assert (body["status"], set(body["failing"])) == ("unavailable", {"database"})

    async def test_redis_down_degrades_but_stays_ready(self, settings: Settings) -> None:
        """The API serves without Redis: a Redis blip must not take every pod out."""
        async with serving(settings, redis_url=f"redis://127.0.0.1:{closed_port()}/0") as served:
            response = await served.client.get("/readyz")
            metrics = (await served.client.get("/metrics")).text

        assert response.status_code == 200
        assert response.json() == {"status": "degraded", "degraded": {"redis": "ConnectionError"}}
        assert 'tripbook_dependency_up{dependency="redis"} 0.0' in metrics
        assert 'tripbook_dependency_up{dependency="database"} 1.0' in metrics

    async def test_draining_is_not_ready(self, settings: Settings) -> None:
        async with serving(settings) as served:
            served.app.state.draining = True
            response = await served.client.get("/readyz")

        assert response.status_code == 503
        assert response.json() == {"status": "draining"}
