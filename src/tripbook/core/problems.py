"""The problem+json shape (RFC 9457) as a schema, so OpenAPI documents every error answer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

PROBLEM_JSON = "application/problem+json"


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class Problem(BaseModel):
    type: str = Field(description="A URI naming the kind of problem")
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable machine-readable code, e.g. SEATS_UNAVAILABLE")
    request_id: str | None = Field(description="Quote it when reporting a problem")
    errors: list[FieldError] | None = Field(default=None, description="Validation errors")
    context: dict[str, Any] | None = Field(default=None, description="Details of the error")


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "model": Problem, "content": {PROBLEM_JSON: {}}}


# Declared on the application, so every operation documents the answers it can give.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _problem("Bad request"),
    401: _problem("Missing, expired or invalid bearer token"),
    403: _problem("Not allowed for this role"),
    404: _problem("No such resource (or not yours)"),
    405: _problem("Method not allowed"),
    409: _problem("Conflicts with the current state; see `code`"),
    413: _problem("Request body too large"),
    422: _problem("Invalid request; see `errors`"),
    429: _problem("Rate limited; retry after `Retry-After` seconds"),
    500: _problem("Unexpected error; quote `request_id`"),
    503: _problem("Temporarily unavailable; retry after `Retry-After` seconds"),
}
