"""Registration and authentication in domain terms, below HTTP."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tripbook.core import security
from tripbook.core.db import unit_of_work
from tripbook.users import repository, service
from tripbook.users.exceptions import EmailAlreadyRegistered, InvalidCredentials
from tripbook.users.models import User

PASSWORD = "correct-horse-42"


def unique_email() -> str:
    return f"Service-{uuid.uuid4().hex[:12]}@Example.com"


@pytest.fixture(scope="module")
async def registered(sessionmaker: async_sessionmaker[AsyncSession]) -> User:
    async with unit_of_work(sessionmaker) as session:
        return await service.register(
            session, email=unique_email(), password=PASSWORD, full_name="Grace Hopper"
        )


class TestRegister:
    async def test_stores_a_lowercased_email_and_a_hash(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        email = unique_email()
        async with unit_of_work(sessionmaker) as session:
            user = await service.register(
                session, email=email, password=PASSWORD, full_name="Grace Hopper"
            )

        async with sessionmaker() as session:
            stored = await session.get(User, user.id)
        assert stored is not None
        assert stored.email == email.lower()
        assert stored.role == "customer"
        assert PASSWORD not in stored.password_hash
        assert await security.verify_password(PASSWORD, stored.password_hash)

    async def test_email_already_registered(
        self, sessionmaker: async_sessionmaker[AsyncSession], registered: User
    ) -> None:
        with pytest.raises(EmailAlreadyRegistered):
            async with unit_of_work(sessionmaker) as session:
                await service.register(
                    session, email=registered.email.upper(), password=PASSWORD, full_name="Again"
                )

    async def test_concurrent_registration_loses_cleanly(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        registered: User,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The existence check ran before the winner committed: the unique index decides."""

        checked: list[str] = []

        async def not_yet_visible(session: AsyncSession, email: str) -> None:
            checked.append(email)

        monkeypatch.setattr(repository, "get_by_email", not_yet_visible)

        with pytest.raises(EmailAlreadyRegistered):
            async with unit_of_work(sessionmaker) as session:
                await service.register(
                    session, email=registered.email, password=PASSWORD, full_name="Racer"
                )

        assert checked == [registered.email]


class TestAuthenticate:
    async def test_returns_the_user(
        self, sessionmaker: async_sessionmaker[AsyncSession], registered: User
    ) -> None:
        async with sessionmaker() as session:
            user = await service.authenticate(
                session, email=registered.email.upper(), password=PASSWORD
            )

        assert user.id == registered.id

    async def test_wrong_password(
        self, sessionmaker: async_sessionmaker[AsyncSession], registered: User
    ) -> None:
        async with sessionmaker() as session:
            with pytest.raises(InvalidCredentials):
                await service.authenticate(session, email=registered.email, password="nope-42-x")

    async def test_unknown_email_still_verifies_a_hash(
        self, sessionmaker: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        verified: list[str | None] = []
        original = security.verify_password

        async def spy(password: str, password_hash: str | None) -> bool:
            verified.append(password_hash)
            return await original(password, password_hash)

        monkeypatch.setattr(service, "verify_password", spy)

        async with sessionmaker() as session:
            with pytest.raises(InvalidCredentials):
                await service.authenticate(session, email=unique_email(), password=PASSWORD)

        assert verified == [None]

    async def test_dummy_hash_never_authenticates(self) -> None:
        assert not await security.verify_password("timing-equaliser", None)
