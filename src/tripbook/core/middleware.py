"""Pure ASGI middleware: request id aliasing, body size limit, access log and metrics.

No ``BaseHTTPMiddleware``: it breaks contextvars and BackgroundTasks and costs throughput.
"""

from __future__ import annotations

import re
import time

from asgi_correlation_id import correlation_id
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tripbook.core.logging import get_logger
from tripbook.core.metrics import HTTP_LATENCY, HTTP_REQUESTS

access_log = get_logger("tripbook.access")

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


def is_valid_request_id(value: str) -> bool:
    # Anything printable and short is accepted, so ids from proxies and tracers survive;
    # the pattern keeps control characters and log injection out.
    return bool(REQUEST_ID_PATTERN.match(value))


class CorrelationIdAliasMiddleware:
    """Accept ``X-Correlation-ID`` as the request id when ``X-Request-ID`` is absent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = MutableHeaders(scope=scope)
            alias = headers.get("x-correlation-id")
            if alias and "x-request-id" not in headers:
                headers["x-request-id"] = alias
        await self.app(scope, receive, send)


class BodySizeLimitMiddleware:
    """Refuse bodies above ``max_bytes`` before anything parses them.

    The 413 is raised from ``receive`` as an ``HTTPException``, which FastAPI lets through
    its body parsing, so the one error mapping in ``main.py`` renders it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = MutableHeaders(scope=scope).get("content-length", "")
        too_large = declared.isdigit() and int(declared) > self.max_bytes
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            if too_large:
                raise HTTPException(413, f"Request body exceeds {self.max_bytes} bytes")
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, f"Request body exceeds {self.max_bytes} bytes")
            return message

        await self.app(scope, limited_receive, send)


class AccessLogMiddleware:
    """One log line and one metrics sample per request, labelled by route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        except BaseException:
            status = 500
            raise
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            method = scope["method"]
            HTTP_REQUESTS.labels(method, template, str(status)).inc()
            HTTP_LATENCY.labels(method, template).observe(elapsed)
            access_log.info(
                "request",
                method=method,
                path=template,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
                request_id=correlation_id.get(),
                user_id=scope.get("state", {}).get("user_id"),
            )
