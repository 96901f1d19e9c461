"""``tripbook create-user``, run as the console script against the test database."""

from __future__ import annotations

import asyncio
import os
import uuid

import asyncpg
import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests import environment
from tests.core.test_errors import assert_problem
from tripbook.users.models import User

TRIPBOOK = str(environment.ROOT / ".venv" / "bin" / "tripbook")


async def tripbook(*args: str) -> tuple[int, str, str]:
    """Run the console script; its exit code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        TRIPBOOK,
        *args,
        env={**os.environ, **environment.ENVIRONMENT},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/v1/auth/token", data={"username": email, "password": password})


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
        env = {**os.environ, **environment.ENVIRONMENT, "TRIPBOOK_DATABASE_URL": url}

        async def migrate() -> tuple[int, str]:
            process = await asyncio.create_subprocess_exec(
                TRIPBOOK, "migrate", env=env, stdout=asyncio.subprocess.PIPE
            )
            stdout, _ = await asyncio.wait_for(process.communicate(), timeout=120)
            assert process.returncode is not None
            return process.returncode, stdout.decode()

        admin = await asyncpg.connect(environment.PG_SERVER.replace("+asyncpg", "") + "/postgres")
        try:
            first, second = await migrate(), await migrate()
            tables = await asyncpg.connect(url.replace("+asyncpg", ""))
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
