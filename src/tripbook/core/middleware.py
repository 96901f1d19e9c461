"""Pure ASGI middleware: request id aliasing, security headers, body size limit, access log
and metrics.

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

# Responses about a person (their credentials, profile, bookings) are never stored by
# browsers or shared caches; the public trip catalogue may be.
NO_STORE_PREFIXES = ("/v1/auth/", "/v1/users/", "/v1/reservations")
# The interactive docs load scripts and styles, which the API's CSP would block.
DOCS_PREFIX = "/docs"
BASE_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
API_CSP = "default-src 'none'; frame-ancestors 'none'"
HSTS = "max-age=63072000; includeSubDomains"


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


def security_headers(path: str, *, hsts: bool) -> dict[str, str]:
    """The security headers for a response to ``path``.

    Also called by the 500 handler, whose response is sent outside every middleware.
    """
    headers = dict(BASE_SECURITY_HEADERS)
    if path.startswith(NO_STORE_PREFIXES):
        headers["Cache-Control"] = "no-store"
    if not path.startswith(DOCS_PREFIX):
        headers["Content-Security-Policy"] = API_CSP
    if hsts:
        headers["Strict-Transport-Security"] = HSTS
    return headers


class SecurityHeadersMiddleware:
    """Add ``security_headers`` to every response, errors included.

    ``hsts`` is for production only: HSTS sent over plain HTTP in development would pin a
    developer's browser to HTTPS for localhost.
    """

    def __init__(self, app: ASGIApp, *, hsts: bool = False) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = security_headers(scope["path"], hsts=self.hsts)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


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
