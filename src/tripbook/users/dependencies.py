"""``CurrentUser`` and ``OpsUser``: who is calling, checked once per request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from tripbook.core.dependencies import SessionDep, SettingsDep
from tripbook.core.errors import PermissionDenied, Unauthenticated
from tripbook.core.security import decode_access_token
from tripbook.users import repository
from tripbook.users.models import User

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)


async def current_user(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> User:
    if not token:
        raise Unauthenticated("Missing bearer token")
    claims = decode_access_token(settings, token)
    user = await repository.get_by_id(session, claims.user_id)
    if user is None:
        raise Unauthenticated("Invalid token")
    request.scope.setdefault("state", {})["user_id"] = user.id  # for the access log
    return user


async def ops_user(user: Annotated[User, Depends(current_user)]) -> User:
    if user.role != "ops":
        raise PermissionDenied("This operation is for operations staff")
    return user


CurrentUser = Annotated[User, Depends(current_user)]
OpsUser = Annotated[User, Depends(ops_user)]
