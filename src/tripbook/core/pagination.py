"""Opaque, stable cursors for keyset pagination."""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel

from tripbook.core.errors import InvalidInput

MAX_LIMIT = 100
T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(*values: Any) -> str:
    raw = json.dumps(list(values), separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("Malformed cursor", field="cursor") from exc
    if not isinstance(values, list) or len(values) != arity:
        raise InvalidInput("Malformed cursor", field="cursor")
    return values


CursorQuery = Annotated[str | None, Query(max_length=512, description="Opaque cursor")]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
