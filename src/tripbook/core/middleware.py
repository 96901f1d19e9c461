"""Pure ASGI middleware: request id aliasing, security headers, body size limit, access log
and metrics.

No ``BaseHTTPMiddleware``: it breaks contextvars and BackgroundTasks and costs throughput.
"""

from __future__ import annotations

import functools
import re
import secrets
import time

from asgi_correlation_id import correlation_id
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tripbook.core.logging import get_logger
from tripbook.core.metrics import record_request

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


def new_request_id() -> str:
    # 32 random hex digits, the shape of asgi-correlation-id's default ``uuid4().hex``
    # (and nginx's $request_id) at a third of its cost: no UUID object is built.
    return secrets.token_hex(16)


def is_valid_request_id(value: str) -> bool:
    # Anything printable and short is accepted, so ids from proxies and tracers survive;
    # the pattern keeps control characters and log injection out.
    return bool(REQUEST_ID_PATTERN.match(value))


def header_value(scope: Scope, name: bytes) -> bytes | None:
    """The first value of request header ``name`` (lower case), read without decoding the rest."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


class CorrelationIdAliasMiddleware:
    """Accept ``X-Correlation-ID`` as the request id when ``X-Request-ID`` is absent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and header_value(scope, b"x-request-id") is None:
            alias = header_value(scope, b"x-correlation-id")
            if alias:
                scope["headers"] = [*scope["headers"], (b"x-request-id", alias)]
        await self.app(scope, receive, send)


def security_headers(path: str, *, hsts: bool) -> dict[str, str]:
    """The security headers for a response to ``path``.

    Also called by the 500 handler, whose response is sent outside every middleware.
    """
    return dict(_security_headers(_path_class(path), hsts))


def _path_class(path: str) -> tuple[bool, bool]:
    return path.startswith(NO_STORE_PREFIXES), path.startswith(DOCS_PREFIX)


@functools.cache
def _security_headers(path_class: tuple[bool, bool], hsts: bool) -> tuple[tuple[str, str], ...]:
    no_store, docs = path_class
    headers = dict(BASE_SECURITY_HEADERS)
    if no_store:
        headers["Cache-Control"] = "no-store"
    if not docs:
        headers["Content-Security-Policy"] = API_CSP
    if hsts:
        headers["Strict-Transport-Security"] = HSTS
    return tuple(headers.items())


@functools.cache
def _encoded_security_headers(
    path_class: tuple[bool, bool], hsts: bool
) -> tuple[frozenset[bytes], list[tuple[bytes, bytes]]]:
    # Encoded once per path class (there are three), not once per response.
    encoded = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in _security_headers(path_class, hsts)
    ]
    return frozenset(name for name, _ in encoded), encoded


class SecurityHeadersMiddleware:
    """Add ``security_headers`` to every response, errors included, replacing any the app set.

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
        names, extra = _encoded_security_headers(_path_class(scope["path"]), self.hsts)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [header for header in message.get("headers", ()) if header[0] not in names]
                message["headers"] = kept + extra
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
        declared = header_value(scope, b"content-length") or b""
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
            record_request(method, template, status, elapsed)
            access_log.info(
                "request",
                method=method,
                path=template,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
                request_id=correlation_id.get(),
                user_id=scope.get("state", {}).get("user_id"),
            )
