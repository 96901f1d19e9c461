"""Registration and authentication in domain terms, below HTTP."""

from __future__ import annotations

import asyncio
import uuid
from functools import partial

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.claims_locks import backend_blocked_by, backend_pid
from tests.support.workers import eventually
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

    @pytest.mark.parametrize("first_ends", ["commit", "rollback"])
    async def test_concurrent_registrations_of_one_email(
        self, sessionmaker: async_sessionmaker[AsyncSession], first_ends: str
    ) -> None:
        """Two registrations on their own connections, the second passing its existence
        check while the first is not yet committed: its INSERT waits on the first's entry
        in the unique index. A committed first wins and the second is refused as a
        duplicate (no IntegrityError escapes); a rolled-back first leaves the email free."""
        email = unique_email()
        async with sessionmaker() as first_session:
            async with first_session.begin() as transaction:
                first = await service.register(
                    first_session, email=email, password=PASSWORD, full_name="First"
                )
                first_pid = await backend_pid(first_session)
                second = asyncio.create_task(register(sessionmaker, email, "Second"))
                await eventually(
                    partial(backend_blocked_by, sessionmaker, first_pid),
                    what="the second registration's INSERT to wait on the first",
                )
                assert not second.done()
                if first_ends == "rollback":
                    await transaction.rollback()
            outcome = await asyncio.gather(second, return_exceptions=True)

        async with sessionmaker() as session:
            stored = await repository.get_by_email(session, email)
        assert stored is not None
        if first_ends == "commit":
            assert [type(result) for result in outcome] == [EmailAlreadyRegistered]
            assert (stored.id, stored.full_name) == (first.id, "First")
        else:
            [second_user] = outcome
            assert isinstance(second_user, User)
            assert (stored.id, stored.full_name) == (second_user.id, "Second")


async def register(
    sessionmaker: async_sessionmaker[AsyncSession], email: str, full_name: str
) -> User:
    async with unit_of_work(sessionmaker) as session:
        return await service.register(session, email=email, password=PASSWORD, full_name=full_name)


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
