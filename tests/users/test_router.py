"""POST /v1/auth/register, POST /v1/auth/token and GET /v1/users/me, in-process."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.claims_locks import backend_blocked_by, backend_pid
from tests.support.factories import PASSWORD, Account, Factories, unique_email
from tests.support.problems import assert_problem
from tests.support.workers import eventually
from tripbook.core.security import decode_access_token, verify_password
from tripbook.settings import Settings
from tripbook.users import service as users
from tripbook.users.models import User

TIMING_ROUNDS = 11  # per path: medians a few slow samples cannot move


def register_body(**overrides: Any) -> dict[str, Any]:
    return {"email": unique_email(), "password": PASSWORD, "full_name": "Ada Lovelace"} | overrides


async def users_with_email(sessionmaker: async_sessionmaker[AsyncSession], email: str) -> int:
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(User).where(func.lower(User.email) == email.lower())
        )
    return int(count or 0)


def signed(settings: Settings, **claims: Any) -> str:
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


@pytest.fixture(scope="module")
async def account(factories: Factories) -> Account:
    return await factories.account()


class TestRegister:
    async def test_creates_a_customer(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        email = unique_email("New.Person")

        response = await client.post("/v1/auth/register", json=register_body(email=email))

        assert response.status_code == 201
        body = response.json()
        assert set(body) == {"id", "email", "full_name", "role", "created_at"}
        assert body["email"] == email.lower()
        assert body["full_name"] == "Ada Lovelace"
        assert body["role"] == "customer"
        assert datetime.fromisoformat(body["created_at"]).tzinfo is not None
        assert PASSWORD not in response.text
        assert "argon2" not in response.text
        async with sessionmaker() as session:
            user = await session.get(User, body["id"])
        assert user is not None
        assert user.password_hash.startswith("$argon2")

    async def test_email_already_registered(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        local = f"dup-{uuid.uuid4().hex[:12]}"
        first = await client.post("/v1/auth/register", json=register_body(email=f"{local}@x.com"))

        second = await client.post(
            "/v1/auth/register", json=register_body(email=f"{local.upper()}@X.COM")
        )

        assert first.status_code == 201
        assert assert_problem(second, 409)["code"] == "EMAIL_ALREADY_REGISTERED"
        assert await users_with_email(sessionmaker, f"{local}@x.com") == 1

    async def test_concurrent_registrations_of_one_email(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """All at once, each on its own pooled connection: one 201, the others the
        documented 409, never a 500, and one account."""
        local = f"race-{uuid.uuid4().hex[:12]}"
        emails = [f"{local}@example.com", f"{local.upper()}@EXAMPLE.COM"] * 3

        responses = await asyncio.gather(
            *(client.post("/v1/auth/register", json=register_body(email=e)) for e in emails)
        )

        statuses = sorted(response.status_code for response in responses)
        assert statuses == [201] + [409] * (len(emails) - 1)
        for response in responses:
            if response.status_code == 409:
                assert assert_problem(response, 409)["code"] == "EMAIL_ALREADY_REGISTERED"
        assert await users_with_email(sessionmaker, emails[0]) == 1

    async def test_registration_waiting_on_an_uncommitted_one_is_409(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        """The race at its narrowest: the request's existence check passed while another
        registration of the email was not yet committed, so its INSERT waits on the unique
        index; once the other commits, the request is answered 409, not 500."""
        email = unique_email("narrow")
        async with sessionmaker() as other, other.begin():
            winner = await users.register(other, email=email, password=PASSWORD, full_name="Winner")
            request = asyncio.create_task(
                client.post("/v1/auth/register", json=register_body(email=email))
            )
            await eventually(
                partial(backend_blocked_by, sessionmaker, await backend_pid(other)),
                what="the request's INSERT to wait on the uncommitted registration",
            )
            assert not request.done()
        response = await request

        assert assert_problem(response, 409)["code"] == "EMAIL_ALREADY_REGISTERED"
        async with sessionmaker() as session:
            stored = await session.scalar(select(User).where(User.email == email))
        assert stored is not None
        assert (stored.id, stored.full_name) == (winner.id, "Winner")

    async def test_password_is_kept_exactly_as_typed(self, client: httpx.AsyncClient) -> None:
        email = unique_email()
        password = "  spaced-out-42  "
        await client.post("/v1/auth/register", json=register_body(email=email, password=password))

        exact = await client.post("/v1/auth/token", data={"username": email, "password": password})
        stripped = await client.post(
            "/v1/auth/token", data={"username": email, "password": password.strip()}
        )

        assert exact.status_code == 200
        assert_problem(stripped, 401)

    @pytest.mark.parametrize(
        ("overrides", "field"),
        [
            pytest.param({"password": "short-1"}, "password", id="password-too-short"),
            pytest.param({"password": "onlyletterspassword"}, "password", id="password-letters"),
            pytest.param({"password": "12345678901"}, "password", id="password-digits"),
            pytest.param({"password": "aaaa1111aaaa"}, "password", id="password-repetitive"),
            pytest.param({"password": "x1" + "y" * 127}, "password", id="password-too-long"),
            pytest.param({"email": "not-an-email"}, "email", id="email-malformed"),
            pytest.param({"email": "user@"}, "email", id="email-no-domain"),
            pytest.param({"email": None}, "email", id="email-null"),
            pytest.param({"email": 42}, "email", id="email-number"),
            pytest.param({"password": ["correct-horse-42"]}, "password", id="password-list"),
            pytest.param({"full_name": "x" * 201}, "full_name", id="name-too-long"),
            pytest.param({"full_name": "   "}, "full_name", id="name-blank"),
            pytest.param({"full_name": {"first": "Ada"}}, "full_name", id="name-object"),
            pytest.param({"role": "ops"}, "role", id="extra-field-role"),
        ],
    )
    async def test_invalid_body_is_422(
        self,
        client: httpx.AsyncClient,
        sessionmaker: async_sessionmaker[AsyncSession],
        overrides: dict[str, Any],
        field: str,
    ) -> None:
        body = register_body(**overrides)

        response = await client.post("/v1/auth/register", json=body)

        problem = assert_problem(response, 422)
        assert problem["code"] == "VALIDATION_ERROR"
        assert ["body", field] in [error["loc"][:2] for error in problem["errors"]]
        if isinstance(body["email"], str):
            assert await users_with_email(sessionmaker, body["email"]) == 0

    @pytest.mark.parametrize("missing", ["email", "password", "full_name"])
    async def test_missing_field_is_422(self, client: httpx.AsyncClient, missing: str) -> None:
        body = register_body()
        del body[missing]

        response = await client.post("/v1/auth/register", json=body)

        problem = assert_problem(response, 422)
        assert problem["errors"] == [
            {"loc": ["body", missing], "msg": "Field required", "type": "missing"}
        ]

    async def test_malformed_json_is_422(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/v1/auth/register",
            content=b'{"email": "a@example.com",',
            headers={"content-type": "application/json"},
        )

        assert assert_problem(response, 422)["code"] == "VALIDATION_ERROR"


class TestToken:
    async def test_issues_a_bearer_token(
        self, client: httpx.AsyncClient, settings: Settings, account: Account
    ) -> None:
        response = await client.post(
            "/v1/auth/token", data={"username": account.email, "password": PASSWORD}
        )

        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"access_token", "token_type", "expires_in"}
        assert body["token_type"] == "bearer"
        assert body["expires_in"] == settings.jwt_ttl_s
        claims = decode_access_token(settings, body["access_token"])
        assert (claims.user_id, claims.role) == (account.id, "customer")
        me = await client.get(
            "/v1/users/me", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
        assert me.json()["id"] == account.id

    async def test_email_is_case_insensitive(
        self, client: httpx.AsyncClient, account: Account
    ) -> None:
        response = await client.post(
            "/v1/auth/token", data={"username": account.email.upper(), "password": PASSWORD}
        )

        assert response.status_code == 200

    async def test_wrong_password_and_unknown_email_look_the_same(
        self, client: httpx.AsyncClient, account: Account
    ) -> None:
        wrong_password = await client.post(
            "/v1/auth/token", data={"username": account.email, "password": "not-the-one-42"}
        )
        unknown_email = await client.post(
            "/v1/auth/token", data={"username": unique_email(), "password": PASSWORD}
        )

        first = assert_problem(wrong_password, 401)
        second = assert_problem(unknown_email, 401)
        assert first["code"] == "INVALID_CREDENTIALS"
        assert first | {"request_id": None} == second | {"request_id": None}
        assert "access_token" not in wrong_password.text

    async def test_wrong_password_and_unknown_email_take_similar_time(
        self, client: httpx.AsyncClient, account: Account
    ) -> None:
        """Both paths verify one argon2 hash. Timed in interleaved rounds with a bare hash
        verification as the yardstick (a busy machine slows all three alike), each path's
        median is above half a hash and they differ by under three quarters of one: an
        unknown email that skipped the hash, or a path hashing twice, is a whole hash off."""

        async def login(username: str) -> float:
            started = time.perf_counter()
            response = await client.post(
                "/v1/auth/token", data={"username": username, "password": "not-the-one-42"}
            )
            assert response.status_code == 401
            return time.perf_counter() - started

        async def bare_hash() -> float:
            started = time.perf_counter()
            assert not await verify_password("not-the-one-42", None)  # the dummy hash
            return time.perf_counter() - started

        await login(unique_email())  # warm-up: the dummy hash is computed once per process
        samples: dict[str, list[float]] = {"unknown": [], "wrong": [], "hash": []}
        for round_ in range(TIMING_ROUNDS):
            steps: list[tuple[str, Callable[[], Awaitable[float]]]] = [
                ("unknown", partial(login, unique_email())),
                ("wrong", partial(login, account.email)),
                ("hash", bare_hash),
            ]
            for name, step in steps[round_ % 3 :] + steps[: round_ % 3]:  # no fixed order
                samples[name].append(await step())

        medians = {name: statistics.median(values) for name, values in samples.items()}
        unknown, wrong, one_hash = medians["unknown"], medians["wrong"], medians["hash"]
        figures = ", ".join(f"{name} {value * 1000:.1f} ms" for name, value in medians.items())
        assert min(unknown, wrong) > one_hash / 2, f"a path skips the hash: {figures}"
        assert abs(unknown - wrong) < one_hash * 0.75, f"the paths differ: {figures}"

    @pytest.mark.parametrize(
        "form",
        [
            pytest.param({"username": "someone@example.com"}, id="no-password"),
            pytest.param({"password": PASSWORD}, id="no-username"),
            pytest.param({}, id="empty"),
        ],
    )
    async def test_incomplete_form_is_422(
        self, client: httpx.AsyncClient, form: dict[str, str]
    ) -> None:
        response = await client.post("/v1/auth/token", data=form)

        assert assert_problem(response, 422)["code"] == "VALIDATION_ERROR"

    async def test_json_instead_of_form_is_422(
        self, client: httpx.AsyncClient, account: Account
    ) -> None:
        response = await client.post(
            "/v1/auth/token", json={"username": account.email, "password": PASSWORD}
        )

        assert_problem(response, 422)


class TestMe:
    async def test_returns_the_caller(self, client: httpx.AsyncClient, account: Account) -> None:
        response = await client.get("/v1/users/me", headers=account.headers)

        assert response.status_code == 200
        assert response.json() | {"created_at": None} == {
            "id": account.id,
            "email": account.email,
            "full_name": "Test Person",
            "role": "customer",
            "created_at": None,
        }

    async def test_anonymous(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/users/me")

        assert assert_problem(response, 401)["code"] == "UNAUTHENTICATED"
        assert response.headers["www-authenticate"] == "Bearer"

    @pytest.mark.parametrize(
        "make_token",
        [
            pytest.param(lambda s, uid: "not-a-jwt", id="garbage"),
            pytest.param(lambda s, uid: "a.b.c", id="garbage-segments"),
            pytest.param(
                lambda s, uid: jwt.encode(
                    {"sub": str(uid), "role": "customer", "exp": datetime.now(UTC) + timedelta(1)},
                    "another-key-entirely-0123456789abcdef",
                    algorithm="HS256",
                ),
                id="other-key",
            ),
            pytest.param(
                lambda s, uid: jwt.encode(
                    {"sub": str(uid), "role": "customer", "exp": datetime.now(UTC) + timedelta(1)},
                    None,
                    algorithm="none",
                ),
                id="alg-none",
            ),
            pytest.param(
                lambda s, uid: signed(
                    s, sub=str(uid), role="customer", exp=datetime.now(UTC) - timedelta(seconds=5)
                ),
                id="expired",
            ),
            pytest.param(
                lambda s, uid: signed(
                    s, sub=str(uid), role="admin", exp=datetime.now(UTC) + timedelta(hours=1)
                ),
                id="unknown-role",
            ),
            pytest.param(
                lambda s, uid: signed(s, sub=str(uid), role="customer"),
                id="no-expiry",
            ),
            pytest.param(
                lambda s, uid: signed(
                    s, sub="alice", role="customer", exp=datetime.now(UTC) + timedelta(hours=1)
                ),
                id="non-numeric-subject",
            ),
            pytest.param(
                lambda s, uid: signed(
                    s, sub=str(2**62), role="customer", exp=datetime.now(UTC) + timedelta(hours=1)
                ),
                id="nonexistent-user",
            ),
        ],
    )
    async def test_bad_token_is_401(
        self,
        client: httpx.AsyncClient,
        settings: Settings,
        account: Account,
        make_token: Callable[[Settings, int], str],
        request: pytest.FixtureRequest,
    ) -> None:
        token = make_token(settings, account.id)

        response = await client.get("/v1/users/me", headers={"Authorization": f"Bearer {token}"})

        # Only a token that was good and ran out is worth refreshing; anything else means
        # signing in again (RFC 6750 §3: both are "invalid_token" to the client library).
        expired = request.node.callspec.id == "expired"
        problem = assert_problem(response, 401)
        assert problem["code"] == ("TOKEN_EXPIRED" if expired else "INVALID_TOKEN")
        assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
        assert account.email not in response.text

    async def test_token_of_a_deleted_user(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        gone = await factories.account()
        async with sessionmaker() as session, session.begin():
            await session.execute(delete(User).where(User.id == gone.id))

        response = await client.get("/v1/users/me", headers=gone.headers)

        assert assert_problem(response, 401)["code"] == "INVALID_TOKEN"

    async def test_other_scheme_is_401(self, client: httpx.AsyncClient, account: Account) -> None:
        response = await client.get(
            "/v1/users/me", headers={"Authorization": f"Basic {account.token}"}
        )

        assert_problem(response, 401)
