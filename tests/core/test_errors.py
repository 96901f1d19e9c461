from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import tripbook
from tests.support.apps import serving
from tests.support.problems import assert_problem
from tripbook.core import errors
from tripbook.core.errors import DomainError
from tripbook.settings import Settings


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

        assert assert_problem(response, 413)["code"] == "PAYLOAD_TOO_LARGE"


class TestUnexpectedError:
    @pytest.fixture
    async def failing_client(self, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
        async with serving(settings, raise_app_exceptions=False) as served:

            @served.app.get("/boom")
            async def boom() -> None:
                raise RuntimeError("secret internals: SELECT password FROM user_account")

            yield served.client

    async def test_500_is_problem_json_without_internals(
        self, failing_client: httpx.AsyncClient
    ) -> None:
        response = await failing_client.get("/boom", headers={"X-Request-ID": "boom-request-1"})

        body = assert_problem(response, 500)
        assert body["request_id"] == "boom-request-1"
        assert "secret" not in response.text
        assert "SELECT" not in response.text
        assert "Traceback" not in response.text


def domain_errors() -> list[type[DomainError]]:
    """Every ``DomainError`` subclass the package defines, all modules imported."""
    for module in pkgutil.walk_packages(tripbook.__path__, "tripbook."):
        importlib.import_module(module.name)
    found: list[type[DomainError]] = []
    pending: list[type[DomainError]] = [DomainError]
    while pending:
        for subclass in pending.pop().__subclasses__():
            if subclass.__module__.startswith("tripbook."):
                found.append(subclass)
                pending.append(subclass)
    return found


class TestHierarchy:
    def test_the_docstring_lists_each_base_with_its_status(self) -> None:
        documented = dict(re.findall(r"[├└]── (\w+)\s+(\d{3})", errors.__doc__ or ""))
        bases = {
            cls.__name__: str(cls.status)
            for cls in domain_errors()
            if cls.__module__ == errors.__name__
        }

        assert documented == bases

    def test_every_error_is_raised_somewhere(self) -> None:
        """A class nothing raises is an answer the API never gives: dead code."""
        source = "\n".join(
            path.read_text() for path in Path(tripbook.__file__).parent.rglob("*.py")
        )
        leaves = [cls for cls in domain_errors() if not cls.__subclasses__()]

        never_raised = [
            cls.__name__
            for cls in leaves
            if not re.search(rf"raise {cls.__name__}\b|(?<!class )\b{cls.__name__}\(", source)
        ]

        assert leaves
        assert never_raised == []
