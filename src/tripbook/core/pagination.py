"""Opaque, stable cursors for keyset pagination."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import ColumnElement
from sqlalchemy.orm import InstrumentedAttribute

from tripbook.core.db import MAX_BIGINT
from tripbook.core.errors import InvalidInput

MAX_LIMIT = 100
CURSOR = ("query", "cursor")
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
        raise InvalidInput("Malformed cursor", loc=CURSOR, field="cursor") from exc
    if not isinstance(values, list) or len(values) != arity:
        raise InvalidInput("Malformed cursor", loc=CURSOR, field="cursor")
    return values


def decode_id_cursor(cursor: str) -> int:
    """The last id of the previous page, from a cursor made by ``encode_cursor(id)``."""
    [value] = decode_cursor(cursor, 1)
    # Only what encode_cursor issues: a bool is an int to Python, and an id past bigint
    # would overflow the driver into a 500.
    if type(value) is not int or not 1 <= value <= MAX_BIGINT:
        raise InvalidInput("Malformed cursor", loc=CURSOR, field="cursor")
    return value


def decode_time_id_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) of the previous page's last row, newest-first listings."""
    created_at, row_id = decode_cursor(cursor, 2)
    try:
        # Only what encode_time_id_cursor issues: an aware instant that exists in UTC. A naive
        # one, or one past year 9999 in UTC, would fail in the driver as a 500.
        instant = datetime.fromisoformat(created_at)
        if instant.tzinfo is None:
            raise ValueError("naive")
        return instant.astimezone(UTC), uuid.UUID(row_id)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInput("Malformed cursor", loc=CURSOR, field="cursor") from exc


def after_time_id(
    created_at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[uuid.UUID],
    after: tuple[datetime, uuid.UUID],
) -> ColumnElement[bool]:
    """Rows after ``after`` in a newest-first (created_at, id) listing."""
    at, last_id = after
    return (created_at < at) | ((created_at == at) & (row_id < last_id))


def encode_time_id_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    return encode_cursor(created_at.isoformat(), str(row_id))


CursorQuery = Annotated[str | None, Query(max_length=512, description="Opaque cursor")]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
