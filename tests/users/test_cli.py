"""``tripbook create-user``, run as the console script against the test database."""

from __future__ import annotations

import uuid

import asyncpg
import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests import environment
from tests.support.api import login
from tests.support.cli import tripbook
from tests.support.problems import assert_problem
from tripbook.users.models import User


async def find_user(sessionmaker: async_sessionmaker[AsyncSession], email: str) -> User | None:
    async with sessionmaker() as session:
        result = await session.execute(select(User).where(User.email == email.lower()))
        return result.scalar_one_or_none()


class TestCreateUser:
    async def test_creates_then_updates(
        self, client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        email = f"Ops-{uuid.uuid4().hex[:12]}@example.com"

        created = await tripbook(
            "create-user", "--email", email, "--password", "first-pass-42", "--role", "ops"
        )
        updated = await tripbook(
            "create-user", "--email", email, "--password", "second-pass-42", "--role", "ops"
        )

        assert created[:2] == (0, f"created ops {email.lower()}\n")
        assert updated[:2] == (0, f"updated ops {email.lower()}\n")
        user = await find_user(sessionmaker, email)
        assert user is not None
        assert user.role == "ops"
        new = await login(client, email, "second-pass-42")
        assert new.status_code == 200
        me = await client.get(
            "/v1/users/me", headers={"Authorization": f"Bearer {new.json()['access_token']}"}
        )
        assert me.json()["role"] == "ops"
        assert_problem(await login(client, email, "first-pass-42"), 401)

    async def test_unknown_role_is_refused(
        self, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        email = f"admin-{uuid.uuid4().hex[:12]}@example.com"

        code, _, stderr = await tripbook(
            "create-user", "--email", email, "--password", "first-pass-42", "--role", "admin"
        )

        assert code != 0
        assert "--role" in stderr
        assert await find_user(sessionmaker, email) is None


class TestMigrate:
    async def test_creates_a_missing_database_then_migrates(self) -> None:
        """What `make run` relies on for a fresh PostgreSQL."""
        name = f"tripbook_cli_{uuid.uuid4().hex[:8]}"
        url = f"{environment.PG_SERVER}/{name}"

        async def migrate() -> tuple[int, str]:
            code, stdout, _ = await tripbook(
                "migrate", env={"TRIPBOOK_DATABASE_URL": url}, timeout_s=120
            )
            return code, stdout

        admin = await asyncpg.connect(f"{environment.PG_SERVER_DSN}/postgres")
        try:
            first, second = await migrate(), await migrate()
            tables = await asyncpg.connect(environment.dsn(url))
            try:
                revision = await tables.fetchval("SELECT version_num FROM alembic_version")
            finally:
                await tables.close()
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()

        assert first == (0, f"database {name} created\ndatabase migrated to head\n")
        assert second == (0, "database migrated to head\n")
        assert revision
