"""schemathesis hooks for tests/test_fuzz.py: every error answer is problem+json."""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.check
def problem_json(ctx: Any, response: Any, case: Any) -> None:
    if response.status_code < 400:
        return
    content_type = response.headers.get("content-type", [""])[0]
    if content_type != "application/problem+json":
        raise AssertionError(f"{response.status_code} answered as {content_type!r}")
    body = response.json()
    missing = {"type", "title", "status", "detail", "code", "request_id"} - set(body)
    if missing:
        raise AssertionError(f"problem body lacks {sorted(missing)}")
