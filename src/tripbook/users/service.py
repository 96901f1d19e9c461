"""Registration and login, in domain terms."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tripbook.core.security import Role, hash_password, verify_password
from tripbook.users import repository
from tripbook.users.exceptions import EmailAlreadyRegistered, InvalidCredentials
from tripbook.users.models import User


async def register(
    session: AsyncSession, *, email: str, password: str, full_name: str, role: Role = "customer"
) -> User:
    # Hash before touching the database: no pooled connection waits on ~100 ms of argon2.
    password_hash = await hash_password(password)
    if await repository.get_by_email(session, email) is not None:
        raise EmailAlreadyRegistered()
    user = User(email=email.lower(), password_hash=password_hash, full_name=full_name, role=role)
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent registration won the race
        raise EmailAlreadyRegistered() from exc
    return user


async def authenticate(session: AsyncSession, *, email: str, password: str) -> User:
    user = await repository.get_by_email(session, email)
    # Always verify a hash, so an unknown email costs as long as a wrong password.
    if not await verify_password(password, user.password_hash if user else None):
        raise InvalidCredentials()
    assert user is not None
    return user
