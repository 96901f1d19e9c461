"""Every revision upgrades and downgrades cleanly on an empty database."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from alembic import command

from tests import environment
from tripbook.cli import alembic_config


async def _tables(database_url: str) -> set[str]:
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        rows = await connection.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row["tablename"] for row in rows}
    finally:
        await connection.close()


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(f"{environment.PG_SERVER.replace('+asyncpg', '')}/postgres")
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def test_upgrade_downgrade_upgrade_on_empty_database() -> None:
    name = f"tripbook_migrations_{uuid.uuid4().hex[:8]}"
    url = f"{environment.PG_SERVER}/{name}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        config = alembic_config(url)
        command.upgrade(config, "head")
        assert {"reservation", "departure", "outbox_event"} <= asyncio.run(_tables(url))

        command.downgrade(config, "base")
        assert asyncio.run(_tables(url)) == {"alembic_version"}

        command.upgrade(config, "head")
        assert "reservation" in asyncio.run(_tables(url))
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
