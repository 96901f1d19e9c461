from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PaymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # An opaque token from the card processor's client-side SDK, never a card number.
    payment_token: str = Field(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")
