"""User administration for the command line (ops accounts are never made over HTTP)."""

from __future__ import annotations

from tripbook.core.db import create_engine, create_sessionmaker, unit_of_work
from tripbook.core.security import Role, hash_password
from tripbook.settings import Settings
from tripbook.users import repository, service


async def upsert_user(
    settings: Settings, *, email: str, password: str, full_name: str, role: Role
) -> bool:
    """Create the user, or reset its password, name and role. True when created."""
    engine = create_engine(settings, pool_size=1, max_overflow=0)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            existing = await repository.get_by_email(session, email)
            if existing is None:
                await service.register(
                    session, email=email, password=password, full_name=full_name, role=role
                )
                return True
            existing.password_hash = await hash_password(password)
            existing.full_name = full_name
            existing.role = role
            return False
    finally:
        await engine.dispose()
