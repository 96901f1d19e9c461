from __future__ import annotations

from pydantic import BaseModel, Field


class Money(BaseModel):
    """An amount in integer minor units (cents), never a float."""

    amount: int
    currency: str = Field(pattern=r"^[A-Z]{3}$")
