"""Password hashing, access tokens, and the client address behind proxies."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from ipaddress import ip_network
from typing import Any

import jwt
import pytest
from argon2 import PasswordHasher
from pydantic import SecretStr
from starlette.requests import HTTPConnection

from tripbook.core import security
from tripbook.core.clientip import Networks, client_ip
from tripbook.core.errors import Unauthenticated
from tripbook.core.security import (
    TokenClaims,
    create_access_token,
    decode_access_token,
    hash_password,
    verify_password,
)
from tripbook.settings import Settings

PASSWORD = "correct-horse-42"


@pytest.fixture(scope="module")
async def password_hash() -> str:
    return await hash_password(PASSWORD)


def token(
    settings: Settings, *, algorithm: str = "HS256", key: str | None = None, **claims: Any
) -> str:
    secret = settings.jwt_secret.get_secret_value() if key is None else key
    return jwt.encode(claims, secret, algorithm=algorithm)


def in_an_hour() -> datetime:
    return datetime.now(UTC) + timedelta(hours=1)


class TestPasswords:
    async def test_round_trip(self, password_hash: str) -> None:
        assert password_hash.startswith("$argon2id$")
        assert PASSWORD not in password_hash
        assert await verify_password(PASSWORD, password_hash)

    async def test_wrong_password(self, password_hash: str) -> None:
        assert not await verify_password(PASSWORD.upper(), password_hash)

    async def test_no_hash_never_matches(self) -> None:
        assert not await verify_password("timing-equaliser", None)

    async def test_corrupt_hash_is_a_mismatch_not_an_error(self) -> None:
        assert not await verify_password(PASSWORD, "not-an-argon2-hash")

    async def test_hashing_runs_off_the_event_loop(self, monkeypatch: pytest.MonkeyPatch) -> None:
        threads: list[threading.Thread] = []
        real = PasswordHasher()

        class RecordingHasher:
            def hash(self, password: str) -> str:
                threads.append(threading.current_thread())
                return real.hash(password)

            def verify(self, password_hash: str, password: str) -> bool:
                threads.append(threading.current_thread())
                return real.verify(password_hash, password)

        monkeypatch.setattr(security, "_hasher", RecordingHasher)

        assert await verify_password(PASSWORD, await hash_password(PASSWORD))

        assert len(threads) == 2
        assert threading.main_thread() not in threads


class TestAccessToken:
    def test_round_trip(self, settings: Settings) -> None:
        issued = create_access_token(settings, user_id=42, role="ops")

        assert decode_access_token(settings, issued) == TokenClaims(user_id=42, role="ops")
        claims = jwt.decode(issued, options={"verify_signature": False})
        expires = datetime.fromtimestamp(claims["exp"], UTC)
        expected = datetime.now(UTC) + timedelta(seconds=settings.jwt_ttl_s)
        assert abs(expires - expected) < timedelta(seconds=30)
        assert jwt.get_unverified_header(issued)["alg"] == "HS256"

    def test_expired(self, settings: Settings) -> None:
        expired = token(
            settings, sub="42", role="customer", exp=datetime.now(UTC) - timedelta(seconds=1)
        )

        with pytest.raises(Unauthenticated, match="expired"):
            decode_access_token(settings, expired)

    def test_a_verified_token_still_expires(
        self, settings: Settings, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        expires = datetime.now(UTC) + timedelta(minutes=5)
        issued = token(settings, sub="42", role="customer", exp=expires)
        assert decode_access_token(settings, issued).user_id == 42  # verified and cached

        class FiveMinutesLater:
            @staticmethod
            def time() -> float:
                return expires.timestamp() + 1

        monkeypatch.setattr(security, "time", FiveMinutesLater)

        with pytest.raises(Unauthenticated, match="expired"):
            decode_access_token(settings, issued)

    def test_a_verdict_is_kept_per_secret(self, settings: Settings) -> None:
        issued = token(settings, sub="42", role="customer", exp=in_an_hour())
        assert decode_access_token(settings, issued).user_id == 42
        rotated = settings.model_copy(update={"jwt_secret": SecretStr("r" * 64)})

        with pytest.raises(Unauthenticated, match="Invalid"):
            decode_access_token(rotated, issued)

    @pytest.mark.parametrize(
        "claims",
        [
            pytest.param({"sub": "42", "role": "admin"}, id="unknown-role"),
            pytest.param({"sub": "42", "role": None}, id="null-role"),
            pytest.param({"sub": "42"}, id="no-role"),
            pytest.param({"role": "customer"}, id="no-subject"),
            pytest.param({"sub": "forty-two", "role": "customer"}, id="non-numeric-subject"),
        ],
    )
    def test_claims_are_validated(self, settings: Settings, claims: dict[str, Any]) -> None:
        with pytest.raises(Unauthenticated):
            decode_access_token(settings, token(settings, exp=in_an_hour(), **claims))

    def test_expiry_is_required(self, settings: Settings) -> None:
        with pytest.raises(Unauthenticated):
            decode_access_token(settings, token(settings, sub="42", role="customer"))

    @pytest.mark.parametrize(
        ("algorithm", "key"),
        [
            pytest.param("HS256", "another-key-entirely-0123456789abcdef", id="other-key"),
            pytest.param("HS512", None, id="other-algorithm-same-key"),
            pytest.param("none", "", id="alg-none"),
        ],
    )
    def test_only_our_signature_is_accepted(
        self, settings: Settings, algorithm: str, key: str | None
    ) -> None:
        # Long enough for HS512, so the forgery is the only thing wrong with the token.
        settings = settings.model_copy(update={"jwt_secret": SecretStr("k" * 64)})
        forged = token(
            settings, algorithm=algorithm, key=key, sub="42", role="ops", exp=in_an_hour()
        )

        with pytest.raises(Unauthenticated):
            decode_access_token(settings, forged)

    def test_tampered_payload_is_refused(self, settings: Settings) -> None:
        header, _, signature = create_access_token(settings, user_id=42, role="customer").split(".")
        elevated = token(settings, key="x" * 32, sub="42", role="ops", exp=in_an_hour())

        with pytest.raises(Unauthenticated):
            decode_access_token(settings, f"{header}.{elevated.split('.')[1]}.{signature}")


def connection(peer: str | None, *forwarded_for: str) -> HTTPConnection:
    return HTTPConnection(
        {
            "type": "http",
            "client": (peer, 50000) if peer else None,
            "headers": [(b"x-forwarded-for", value.encode()) for value in forwarded_for],
        }
    )


PROXY: Networks = [ip_network("127.0.0.1/32")]
PROXIES: Networks = [ip_network("127.0.0.1/32"), ip_network("10.0.0.0/8")]


class TestClientIp:
    @pytest.mark.parametrize(
        ("trusted", "peer", "forwarded_for", "expected"),
        [
            pytest.param([], "127.0.0.1", ["6.6.6.6"], "127.0.0.1", id="no-trusted-proxies"),
            pytest.param(PROXY, "10.1.2.3", ["6.6.6.6"], "10.1.2.3", id="peer-not-a-proxy"),
            pytest.param(PROXY, "127.0.0.1", [], "127.0.0.1", id="proxy-without-header"),
            pytest.param(PROXY, "127.0.0.1", ["1.2.3.4"], "1.2.3.4", id="one-hop"),
            pytest.param(
                PROXY, "127.0.0.1", ["6.6.6.6, 1.2.3.4"], "1.2.3.4", id="forged-left-entry"
            ),
            pytest.param(
                PROXIES,
                "127.0.0.1",
                ["6.6.6.6, 1.2.3.4, 10.0.0.7"],
                "1.2.3.4",
                id="two-trusted-hops",
            ),
            pytest.param(
                PROXIES, "127.0.0.1", ["10.0.0.9, 10.0.0.7"], "10.0.0.9", id="all-hops-trusted"
            ),
            pytest.param(PROXY, "127.0.0.1", [" , 1.2.3.4 ,, "], "1.2.3.4", id="blank-entries"),
            pytest.param(
                PROXY,
                "127.0.0.1",
                ["6.6.6.6", "1.2.3.4"],
                "1.2.3.4",
                id="forged-first-header-line",
            ),
            pytest.param([ip_network("::1/128")], "::1", ["2001:db8::1"], "2001:db8::1", id="ipv6"),
            pytest.param(PROXY, None, ["1.2.3.4"], "unknown", id="no-peer"),
        ],
    )
    def test_walks_trusted_hops_right_to_left(
        self, trusted: Networks, peer: str | None, forwarded_for: list[str], expected: str
    ) -> None:
        assert client_ip(connection(peer, *forwarded_for), trusted) == expected
