"""Liveness, readiness and metrics endpoints for the orchestrator and Prometheus."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from tripbook.core.logging import get_logger
from tripbook.core.metrics import DEPENDENCY_UP, render_latest

log = get_logger(__name__)
Check = Callable[[Request], Awaitable[None]]


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _check_database(request: Request) -> None:
    async with request.app.state.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def _check_redis(request: Request) -> None:
    await request.app.state.redis.ping()


# What readiness checks, and whether the pod can serve without it. Without PostgreSQL
# nothing works: the pod leaves the Service. Without Redis the API still searches, holds
# and pays (cache bypassed, limiter open): draining every pod for a Redis blip would turn
# it into a full outage, so Redis trouble is reported, not acted on.
CHECKS: dict[str, tuple[Check, bool]] = {
    "database": (_check_database, True),
    "redis": (_check_redis, False),
}


async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    if state.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    timeout = state.settings.readiness_timeout_s
    results = await asyncio.gather(
        *(asyncio.wait_for(check(request), timeout) for check, _ in CHECKS.values()),
        return_exceptions=True,
    )
    failing: dict[str, str] = {}
    degraded: dict[str, str] = {}
    for (name, (_, required)), result in zip(CHECKS.items(), results, strict=True):
        DEPENDENCY_UP.labels(name).set(0 if isinstance(result, BaseException) else 1)
        if isinstance(result, BaseException):
            (failing if required else degraded)[name] = type(result).__name__
    if degraded:
        log.warning("dependency_degraded", degraded=degraded)
    if failing:
        body: dict[str, object] = {"status": "unavailable", "failing": failing}
        return JSONResponse(body | ({"degraded": degraded} if degraded else {}), status_code=503)
    if degraded:
        return JSONResponse({"status": "degraded", "degraded": degraded})
    return JSONResponse({"status": "ok"})


async def metrics() -> Response:
    body, content_type = render_latest()
    return Response(body, media_type=content_type)


def add_probe_routes(app: FastAPI) -> None:
    """Register the probes on the app itself; ``create_app`` calls this before any router.

    The kubelet calls them every few seconds in every pod. On the app they are matched
    first and directly: a route of an included ``APIRouter`` goes through FastAPI's
    include machinery, which cost ~15 % of a ``/healthz`` request's instructions.
    """
    for path, endpoint in (("/healthz", healthz), ("/readyz", readyz), ("/metrics", metrics)):
        app.add_api_route(path, endpoint, methods=["GET"], tags=["probes"], include_in_schema=False)
