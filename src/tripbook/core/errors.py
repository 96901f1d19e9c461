"""The domain error hierarchy. Services raise these; only ``main.py`` maps them to HTTP.

    DomainError                  (500: a bug, never expected)
    ├── NotFound                 404
    ├── Conflict                 409
    ├── PermissionDenied         403
    ├── Unauthenticated          401
    ├── InvalidInput             422
    ├── RateLimited              429, retryable
    └── Unavailable              503, retryable (a lock or statement timeout, a dead pool)

Each domain subclasses these in its own ``exceptions.py`` with a stable ``code``
(``SEATS_UNAVAILABLE``, ``DEPARTURE_NOT_FOUND`` …) that clients may switch on.

A transient database failure (a lock or statement timeout, a deadlock, no pooled
connection) is turned into ``Unavailable`` by ``main.on_database_error``, wherever it
was raised. A body over ``TRIPBOOK_MAX_BODY_BYTES`` is refused before anything parses it
(``BodySizeLimitMiddleware``): 413 ``PAYLOAD_TOO_LARGE``, not a domain error.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL_ERROR"
    title: ClassVar[str] = "Internal error"
    retry_after_s: int | None = None

    def __init__(self, message: str | None = None, **context: Any) -> None:
        self.message = message or self.title
        self.context = context
        super().__init__(self.message)


class NotFound(DomainError):
    status = 404
    code = "NOT_FOUND"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    code = "CONFLICT"
    title = "Conflict"


class PermissionDenied(DomainError):
    status = 403
    code = "PERMISSION_DENIED"
    title = "Permission denied"


class Unauthenticated(DomainError):
    status = 401
    code = "UNAUTHENTICATED"
    title = "Not authenticated"
    # RFC 6750 §3: no error code when the request carried no token at all.
    www_authenticate: ClassVar[str] = "Bearer"


class InvalidInput(DomainError):
    """``loc`` names the input at fault (``("query", "cursor")``): the problem then lists it
    in ``errors[]``, the same shape as any request that fails validation."""

    status = 422
    code = "INVALID_INPUT"
    title = "Invalid input"

    def __init__(
        self, message: str | None = None, *, loc: tuple[str, ...] = (), **context: Any
    ) -> None:
        super().__init__(message, **context)
        self.loc = loc


class RateLimited(DomainError):
    status = 429
    code = "RATE_LIMITED"
    title = "Too many requests"

    def __init__(self, message: str | None = None, *, retry_after_s: int, **context: Any) -> None:
        super().__init__(message, **context)
        self.retry_after_s = retry_after_s


class Unavailable(DomainError):
    """A temporary condition: the client should retry after ``retry_after_s``."""

    status = 503
    code = "UNAVAILABLE"
    title = "Temporarily unavailable"

    def __init__(self, message: str | None = None, *, retry_after_s: int = 1, **context: Any):
        super().__init__(message, **context)
        self.retry_after_s = retry_after_s
