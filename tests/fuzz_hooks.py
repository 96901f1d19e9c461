"""schemathesis hooks for tests/test_fuzz.py (loaded through SCHEMATHESIS_HOOKS).

- ``problem_json``: every error answer is problem+json with the documented members.
- ``before_call``: fields that must be unique get fresh values (an Idempotency-Key, the
  email a new account registers), the way schemathesis suggests when requests collide.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import schemathesis

IDEMPOTENCY_KEY = "Idempotency-Key"
# The header's schema (core/idempotency.py): printable ASCII, 1 to 255 characters.
VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")
REGISTER = ("POST", "/v1/auth/register")
MAX_LOCAL_PART = 64  # RFC 5321


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


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    fresh_idempotency_key(case)
    if (case.method.upper(), case.path) == REGISTER:
        fresh_email(case)


def fresh_idempotency_key(case: Any) -> None:
    """Generated keys repeat across cases (the coverage phase sends one value throughout), and
    a key reused for another request is refused by design (422 IDEMPOTENCY_KEY_REUSED), so
    no hold or payment after the first got past it. A valid key stays valid: the generated
    one with a unique suffix, cut to the header's maximum."""
    key = (case.headers or {}).get(IDEMPOTENCY_KEY)
    if isinstance(key, str) and VALID_KEY.fullmatch(key):
        case.headers[IDEMPOTENCY_KEY] = f"{key}.{uuid.uuid4().hex}"[-255:]


def fresh_email(case: Any) -> None:
    """The schema's example email, and emails drawn from earlier responses, are registered
    already: 409 for every valid registration after the first. The generated address keeps
    its shape, behind a unique prefix."""
    email = case.body.get("email") if isinstance(case.body, dict) else None
    if not isinstance(email, str) or email.count("@") != 1:
        return
    local, domain = email.split("@")
    prefix = uuid.uuid4().hex[:12]
    local = prefix + (local if len(prefix + local) <= MAX_LOCAL_PART else local[len(prefix) :])
    case.body["email"] = f"{local}@{domain}"
