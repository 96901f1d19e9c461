from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class PaymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # An opaque token from the card processor's client-side SDK, never a card number.
    payment_token: str = Field(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")


class PaymentRead(BaseModel):
    """The reservation's latest charge, as a customer waiting for settlement sees it."""

    status: Literal["pending", "succeeded", "failed"] = Field(
        description="pending: being settled, retried with backoff while the provider fails"
    )
    attempts: int = Field(ge=0, description="calls made to the payment provider so far")
    last_error: str | None = Field(
        description="what went wrong with the latest attempt, in words safe to show"
    )
    updated_at: datetime
