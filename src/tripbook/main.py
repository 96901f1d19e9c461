"""The application factory: middleware order, routers under /v1, the error mapping, lifespan.

This module is the only place that turns domain errors into HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from types import FrameType
from typing import Any

from asgi_correlation_id import CorrelationIdMiddleware, correlation_id
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from tripbook import probes
from tripbook.core.db import create_engine, create_sessionmaker, is_transient
from tripbook.core.errors import DomainError, InvalidInput, Unauthenticated, Unavailable
from tripbook.core.logging import configure_logging, get_logger
from tripbook.core.middleware import (
    AccessLogMiddleware,
    BodySizeLimitMiddleware,
    CorrelationIdAliasMiddleware,
    SecurityHeadersMiddleware,
    is_valid_request_id,
    new_request_id,
    security_headers,
)
from tripbook.core.problems import PROBLEM_JSON, PROBLEM_RESPONSES
from tripbook.core.ratelimit import RateLimiter
from tripbook.core.redis import create_redis
from tripbook.core.relay import OutboxRelay
from tripbook.core.security import warm_up_password_hashing
from tripbook.payments.router import ops_router as ops_refunds_router
from tripbook.payments.router import router as payments_router
from tripbook.reservations.router import router as reservations_router
from tripbook.settings import Settings, get_settings
from tripbook.trips.router import router as trips_router
from tripbook.users.router import auth_router, users_router

log = get_logger(__name__)


def problem(
    status: int,
    *,
    code: str,
    title: str | None = None,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": f"https://tripbook.dev/problems/{code.lower().replace('_', '-')}",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail or title or HTTPStatus(status).phrase,
        "code": code,
        "request_id": correlation_id.get(),
        **extra,
    }
    return JSONResponse(
        jsonable_encoder(body), status_code=status, headers=headers, media_type=PROBLEM_JSON
    )


async def on_domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    headers: dict[str, str] = {}
    if exc.retry_after_s:
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, Unauthenticated):
        headers["WWW-Authenticate"] = exc.www_authenticate  # RFC 6750 §3
    if exc.status >= 500:
        log.warning("domain_error", code=exc.code, detail=exc.message, **exc.context)
    extra: dict[str, Any] = {"context": exc.context} if exc.context else {}
    if isinstance(exc, InvalidInput) and exc.loc:
        extra["errors"] = [{"loc": list(exc.loc), "msg": exc.message, "type": "value_error"}]
    return problem(
        exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.message,
        headers=headers or None,
        **extra,
    )


# Codes clients may switch on, fixed here: HTTPStatus names change between Python
# versions (413 is REQUEST_ENTITY_TOO_LARGE on 3.11, CONTENT_TOO_LARGE on 3.13).
HTTP_ERROR_CODES = {
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
}


async def on_http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_ERROR_CODES.get(exc.status_code) or HTTPStatus(exc.status_code).name
    return problem(
        exc.status_code,
        code=code,
        detail=str(exc.detail),
        headers=dict(exc.headers) if exc.headers else None,
    )


async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
        for error in exc.errors()
    ]
    return problem(
        422,
        code="VALIDATION_ERROR",
        title="Invalid request",
        detail="The request is invalid",
        errors=errors,
    )


async def on_database_error(request: Request, exc: Exception) -> JSONResponse:
    if not is_transient(exc):
        return await on_unexpected_error(request, exc)
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    log.warning("database_unavailable", error=type(exc).__name__, sqlstate=sqlstate)
    busy = Unavailable("The database is busy or unreachable; retry shortly", retry_after_s=1)
    return await on_domain_error(request, busy)


async def on_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Runs in Starlette's outermost middleware, outside the correlation id and security
    # headers middleware, so their headers are set here. The trace goes to the log, never
    # to the client.
    log.error("unhandled_exception", exc_info=exc)
    production = request.app.state.settings.env == "production"
    headers = security_headers(request.url.path, hsts=production)
    request_id = correlation_id.get()
    if request_id:
        headers["X-Request-ID"] = request_id
    return problem(
        500,
        code="INTERNAL_ERROR",
        detail="An unexpected error occurred; quote the request id when reporting it",
        headers=headers,
    )


def _drain_on_sigterm(app: FastAPI, delay_s: float) -> None:
    """On SIGTERM, turn /readyz to 503 at once; hand over to the server after ``delay_s``."""
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return
    loop = asyncio.get_running_loop()

    def handle(signum: int, frame: FrameType | None) -> None:
        app.state.draining = True
        log.info("draining", delay_s=delay_s)
        loop.call_soon_threadsafe(loop.call_later, delay_s, previous, signum, frame)

    signal.signal(signal.SIGTERM, handle)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    app.state.engine = create_engine(settings)
    app.state.sessionmaker = create_sessionmaker(app.state.engine)
    app.state.redis = create_redis(settings)
    app.state.rate_limiter = RateLimiter(settings, app.state.redis)
    # Publishes this app's outbox events after each commit (see core/outbox.py).
    app.state.relay = OutboxRelay(settings, app.state.engine, background=True)
    app.state.draining = False
    await warm_up_password_hashing()  # the first unknown-email login costs no extra hash
    # Outside the main thread (an in-process test client) there is no signal to hook.
    with contextlib.suppress(ValueError):
        _drain_on_sigterm(app, settings.shutdown_delay_s)
    log.info("startup", env=settings.env)
    try:
        yield
    finally:
        app.state.draining = True
        await app.state.relay.aclose()
        await app.state.redis.aclose()
        await app.state.engine.dispose()
        log.info("shutdown")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings)
    app = FastAPI(
        title="tripbook",
        version="1.0.0",
        description="Search trips, hold seats, pay and cancel.",
        lifespan=lifespan,
        debug=settings.debug,
        # FastAPI would add its schema and docs routes ahead of ours, so every request would
        # try them first; they are added last, below.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        responses=PROBLEM_RESPONSES,
    )
    app.state.settings = settings
    app.state.draining = False

    app.add_exception_handler(DomainError, on_domain_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(DBAPIError, on_database_error)
    app.add_exception_handler(SQLAlchemyTimeoutError, on_database_error)
    app.add_exception_handler(Exception, on_unexpected_error)

    # Added innermost first: the request passes alias → correlation id → access log →
    # security headers → CORS (only with allowed origins) → limit. CORS answers preflights
    # itself, so they still get the security headers, a request id and an access line.
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allow_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "Idempotent-Replayed"],
            max_age=600,
        )
    app.add_middleware(SecurityHeadersMiddleware, hsts=settings.env == "production")
    app.add_middleware(AccessLogMiddleware)
    app.add_middleware(
        CorrelationIdMiddleware,
        validator=is_valid_request_id,
        generator=new_request_id,
        update_request_header=False,  # the id is read from the context variable, not headers
    )
    app.add_middleware(CorrelationIdAliasMiddleware)

    probes.add_probe_routes(app)
    for router in (
        auth_router,
        users_router,
        trips_router,
        reservations_router,
        payments_router,
        ops_refunds_router,
    ):
        app.include_router(router)
    app.openapi_url = "/v1/openapi.json"
    app.docs_url = "/docs" if settings.env != "production" else None
    app.setup()  # adds the schema and docs routes, now after the API's
    return app
