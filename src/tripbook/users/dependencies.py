"""``CurrentUser``, ``OpsUser`` and ``CurrentCaller``: who is calling, checked once per request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from tripbook.core.dependencies import SessionDep, SettingsDep
from tripbook.core.errors import PermissionDenied, Unauthenticated
from tripbook.core.security import InvalidToken, TokenClaims, decode_access_token
from tripbook.users import repository
from tripbook.users.models import User

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)


async def current_caller(
    request: Request,
    settings: SettingsDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> TokenClaims:
    """The caller as the token says, without a database read.

    Only for operations that check the account themselves, in the statement they run
    anyway (a seat hold); everything else uses ``CurrentUser``.
    """
    if not token:
        raise Unauthenticated("Missing bearer token")
    claims = decode_access_token(settings, token)
    request.scope.setdefault("state", {})["user_id"] = claims.user_id  # for the access log
    return claims


async def current_user(
    claims: Annotated[TokenClaims, Depends(current_caller)], session: SessionDep
) -> User:
    user = await repository.get_by_id(session, claims.user_id)
    if user is None:
        raise InvalidToken("Invalid token")  # the account was deleted after sign-in
    return user


async def ops_user(user: Annotated[User, Depends(current_user)]) -> User:
    if user.role != "ops":
        raise PermissionDenied("This operation is for operations staff")
    return user


CurrentCaller = Annotated[TokenClaims, Depends(current_caller)]
CurrentUser = Annotated[User, Depends(current_user)]
OpsUser = Annotated[User, Depends(ops_user)]
