"""Rate limits through the API: per user, else per client IP, fail-open, never blocking.

Each test builds its own app with low limits and its own Redis key prefix, so counts never
leak between tests (or into the suite's shared app, whose limits are out of the way).
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from ipaddress import ip_network
from typing import Any

import httpx
import limits.aio.storage
import pytest
from fastapi import FastAPI

from tests import environment
from tests.support.apps import client_of, running
from tests.support.factories import Factories
from tests.support.problems import assert_problem
from tests.support.sandboxes import closed_port
from tripbook.core.ratelimit import RateLimiter
from tripbook.settings import Settings

# The form is incomplete on purpose: the limit is checked first, so an allowed request
# is a cheap 422 and a refused one a 429, with no password hashing in between.
NO_FORM: dict[str, str] = {}


@asynccontextmanager
async def limited_app(settings: Settings, **overrides: Any) -> AsyncIterator[FastAPI]:
    """An app of its own with ``overrides``, counting in a Redis key space of its own."""
    async with running(
        settings, redis_key_prefix=environment.own_key_prefix("ratelimit-test"), **overrides
    ) as app:
        yield app


async def token_request(client: httpx.AsyncClient, **headers: str) -> httpx.Response:
    return await client.post("/v1/auth/token", data=NO_FORM, headers=headers)


def hold_body() -> dict[str, Any]:
    # An unknown departure: a cheap 404 when allowed, a 429 when limited.
    return {"departure_id": 2**62, "seats": 1, "passengers": [{"full_name": "A"}]}


def wrong_login(email: str) -> dict[str, str]:
    return {"username": email, "password": "not-the-password-1"}


class TestAuthLimit:
    async def test_other_accounts_tokens_buy_no_extra_guesses(
        self, settings: Settings, factories: Factories
    ) -> None:
        """The auth limit counts the address, not whatever bearer token comes along."""
        victim = await factories.account()
        helpers = [await factories.account() for _ in range(3)]
        async with (
            limited_app(settings, rate_limit_auth="2/minute") as app,
            client_of(app) as client,
        ):
            statuses = [
                (
                    await client.post(
                        "/v1/auth/token", data=wrong_login(victim.email), headers=helper.headers
                    )
                ).status_code
                for helper in helpers
            ]

        assert statuses == [401, 401, 429]

    async def test_many_addresses_share_one_accounts_budget(
        self, settings: Settings, factories: Factories
    ) -> None:
        victim, other = await factories.account(), await factories.account()
        async with (
            limited_app(settings, rate_limit_auth="2/minute") as app,
            client_of(app, peer="10.0.0.1") as first,
            client_of(app, peer="10.0.0.2") as second,
            client_of(app, peer="10.0.0.3") as third,
        ):
            guesses = [
                (await client.post("/v1/auth/token", data=wrong_login(victim.email))).status_code
                for client in (first, second, third)
            ]
            # Another account is not held back by the first one's budget.
            elsewhere = await third.post("/v1/auth/token", data=wrong_login(other.email))

        assert guesses == [401, 401, 429]
        assert elsewhere.status_code == 401

    async def test_fourth_request_is_429(self, settings: Settings) -> None:
        async with (
            limited_app(settings, rate_limit_auth="3/minute") as app,
            client_of(app) as client,
        ):
            allowed = [await token_request(client) for _ in range(3)]
            refused = await token_request(client)

        assert [response.status_code for response in allowed] == [422, 422, 422]
        body = assert_problem(refused, 429)
        assert body["code"] == "RATE_LIMITED"
        assert body["context"] == {"scope": "auth"}
        retry_after = refused.headers["retry-after"]
        assert retry_after.isdigit()
        assert 1 <= int(retry_after) <= 60

    async def test_register_shares_the_auth_budget(self, settings: Settings) -> None:
        async with (
            limited_app(settings, rate_limit_auth="2/minute") as app,
            client_of(app) as client,
        ):
            await token_request(client)
            await client.post("/v1/auth/register", json={})
            refused = await client.post("/v1/auth/register", json={})

        assert assert_problem(refused, 429)["code"] == "RATE_LIMITED"

    async def test_disabled(self, settings: Settings) -> None:
        async with (
            limited_app(settings, rate_limit_auth="1/minute", rate_limit_enabled=False) as app,
            client_of(app) as client,
        ):
            responses = [await token_request(client) for _ in range(5)]

        assert {response.status_code for response in responses} == {422}


class TestDefaultLimit:
    async def test_catalogue_and_profile_are_limited(self, settings: Settings) -> None:
        async with (
            limited_app(settings, rate_limit_default="2/minute") as app,
            client_of(app) as client,
        ):
            allowed = [await client.get("/v1/trips") for _ in range(2)]
            refused = [await client.get("/v1/trips/1"), await client.get("/v1/users/me")]
            probes = [await client.get("/healthz") for _ in range(3)]

        assert [response.status_code for response in allowed] == [200, 200]
        for response in refused:
            assert assert_problem(response, 429)["code"] == "RATE_LIMITED"
        assert {response.status_code for response in probes} == {200}

    async def test_a_route_with_its_own_limit_counts_only_against_that(
        self, settings: Settings, factories: Factories
    ) -> None:
        """As slowapi's default limits: holds spend the reservations budget, reads the default."""
        account = await factories.account()
        async with (
            limited_app(
                settings, rate_limit_default="2/minute", rate_limit_reservations="3/minute"
            ) as app,
            client_of(app) as client,
        ):
            holds = [
                await client.post("/v1/reservations", json=hold_body(), headers=account.headers)
                for _ in range(3)
            ]
            reads = [
                await client.get("/v1/reservations", headers=account.headers) for _ in range(3)
            ]

        assert [response.status_code for response in holds] == [404, 404, 404]
        assert [response.status_code for response in reads] == [200, 200, 429]


class TestCallerKey:
    async def test_per_user_with_a_bearer_token(
        self, settings: Settings, factories: Factories
    ) -> None:
        first, second = await factories.account(), await factories.account()
        async with (
            limited_app(settings, rate_limit_reservations="2/minute") as app,
            client_of(app) as client,
        ):

            async def hold(headers: dict[str, str]) -> int:
                response = await client.post("/v1/reservations", json=hold_body(), headers=headers)
                return response.status_code

            first_user = [await hold(first.headers) for _ in range(3)]
            second_user = [await hold(second.headers) for _ in range(2)]
            anonymous = await hold({})

        assert first_user == [404, 404, 429]
        assert second_user == [404, 404]
        assert anonymous == 401

    async def test_per_address_when_anonymous(self, settings: Settings) -> None:
        async with (
            limited_app(settings, rate_limit_auth="2/minute") as app,
            client_of(app, peer="10.0.0.1") as first,
            client_of(app, peer="10.0.0.2") as second,
        ):
            first_address = [(await token_request(first)).status_code for _ in range(3)]
            second_address = (await token_request(second)).status_code

        assert first_address == [422, 422, 429]
        assert second_address == 422

    async def test_invalid_tokens_count_against_the_address(self, settings: Settings) -> None:
        async with (
            limited_app(settings, rate_limit_auth="2/minute") as app,
            client_of(app) as client,
        ):
            statuses = [
                (await token_request(client, authorization=f"Bearer forged-{n}")).status_code
                for n in range(3)
            ]

        assert statuses == [422, 422, 429]

    @pytest.mark.parametrize(
        ("trusted", "peer"),
        [
            pytest.param([], "127.0.0.1", id="no-trusted-proxies"),
            pytest.param([ip_network("127.0.0.1/32")], "10.1.2.3", id="peer-not-trusted"),
        ],
    )
    async def test_forged_forwarded_for_is_ignored(
        self, settings: Settings, trusted: list[Any], peer: str
    ) -> None:
        async with (
            limited_app(settings, rate_limit_auth="3/minute", trusted_proxies=trusted) as app,
            client_of(app, peer=peer) as client,
        ):
            statuses = [
                (await token_request(client, **{"x-forwarded-for": f"203.0.113.{n}"})).status_code
                for n in range(4)
            ]

        assert statuses == [422, 422, 422, 429]

    async def test_forwarded_for_from_a_trusted_proxy(self, settings: Settings) -> None:
        async with (
            limited_app(
                settings,
                rate_limit_auth="2/minute",
                trusted_proxies=[ip_network("127.0.0.1/32")],
            ) as app,
            client_of(app, peer="127.0.0.1") as proxy,
        ):

            async def via_proxy(forwarded_for: str) -> int:
                response = await token_request(proxy, **{"x-forwarded-for": forwarded_for})
                return response.status_code

            first_client = [await via_proxy("198.51.100.1") for _ in range(3)]
            # A client can prepend what it likes; the proxy's own entry is what counts.
            forged_prefix = await via_proxy("192.0.2.99, 198.51.100.1")
            second_client = await via_proxy("198.51.100.2")

        assert first_client == [422, 422, 429]
        assert forged_prefix == 429
        assert second_client == 422


class TestRedisUnavailable:
    @pytest.fixture
    async def unreachable(self, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
        # Built before ``captured_logs`` is requested: create_app reconfigures logging.
        broken = {"redis_url": f"redis://127.0.0.1:{closed_port()}/0"}
        async with (
            limited_app(settings, rate_limit_auth="1/minute", **broken) as app,
            client_of(app) as client,
        ):
            yield client

    async def test_fails_open_and_says_so(
        self,
        unreachable: httpx.AsyncClient,
        captured_logs: Callable[[], list[dict[str, Any]]],
    ) -> None:
        responses = [await token_request(unreachable) for _ in range(3)]

        assert {response.status_code for response in responses} == {422}
        warnings = [line for line in captured_logs() if line["event"] == "rate_limit_unavailable"]
        assert len(warnings) == 3
        assert {(line["level"], line["scope"]) for line in warnings} == {("warning", "auth")}


class TestNonBlocking:
    async def test_uses_the_async_storage(self, app: FastAPI) -> None:
        limiter: RateLimiter = app.state.rate_limiter

        assert isinstance(limiter._storage, limits.aio.storage.Storage)
        assert inspect.iscoroutinefunction(limiter._limiter.hit)
        assert inspect.iscoroutinefunction(limiter._limiter.get_window_stats)

    async def test_many_concurrent_requests_all_complete(self, settings: Settings) -> None:
        # Twice the Redis pool. A generous timeout: a loop busy with 200 requests on a loaded
        # machine must not pass for Redis trouble (which would fail open and skew the count).
        async with (
            limited_app(settings, rate_limit_auth="50/minute", redis_timeout_s=5.0) as app,
            client_of(app) as client,
        ):
            responses = await asyncio.wait_for(
                asyncio.gather(*(token_request(client) for _ in range(200))), timeout=60
            )

        assert Counter(response.status_code for response in responses) == {422: 50, 429: 150}
