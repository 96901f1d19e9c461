from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Depends, Form, Request, status

from tripbook.core.dependencies import SessionDep, SettingsDep
from tripbook.core.ratelimit import RateLimiter, rate_limit
from tripbook.core.security import Role, create_access_token
from tripbook.users import service
from tripbook.users.dependencies import CurrentUser
from tripbook.users.models import User
from tripbook.users.schemas import AccessToken, LoginForm, UserCreate, UserRead

auth_router = APIRouter(prefix="/v1/auth", tags=["auth"])
users_router = APIRouter(
    prefix="/v1/users", tags=["users"], dependencies=[Depends(rate_limit("default"))]
)

auth_limit = Depends(rate_limit("auth"))


@auth_router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    dependencies=[auth_limit],
)
async def register(body: UserCreate, session: SessionDep) -> User:
    return await service.register(
        session, email=body.email, password=body.password, full_name=body.full_name
    )


@auth_router.post("/token", response_model=AccessToken, dependencies=[auth_limit])
async def token(
    form: Annotated[LoginForm, Form()],
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
) -> AccessToken:
    """Sign in. Limited per client address and, so that many addresses cannot share the
    guessing, per account signed in to (``TRIPBOOK_RATE_LIMIT_AUTH`` each)."""
    limiter: RateLimiter = request.app.state.rate_limiter
    await limiter.check(request, "auth", key=f"login:{form.username.strip().lower()}")
    user = await service.authenticate(session, email=form.username, password=form.password)
    return AccessToken(
        access_token=create_access_token(settings, user_id=user.id, role=cast(Role, user.role)),
        expires_in=settings.jwt_ttl_s,
    )


@users_router.get("/me", response_model=UserRead)
async def me(user: CurrentUser) -> User:
    return user
