from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tripbook.core.money import Money
from tripbook.payments.models import Payment


class PaymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # An opaque token from the card processor's client-side SDK, never a card number.
    payment_token: str = Field(min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$")


class RefundRead(BaseModel):
    """A refund of the charge, as the customer sees it."""

    status: Literal["pending", "unknown", "succeeded", "refund_failed"] = Field(
        description="pending or unknown: being sent to the provider (retried until it "
        "answers); refund_failed: the provider refused it and our staff is on it"
    )
    amount: Money
    created_at: datetime
    updated_at: datetime


class PaymentRead(BaseModel):
    """The reservation's latest charge and its refunds, as a customer waiting sees them."""

    status: Literal["pending", "unknown", "succeeded", "failed"] = Field(
        description="pending: not sent yet; unknown: sent, the provider's answer is not "
        "known yet (timeouts are retried, then reconciled): never read it as failed; "
        "succeeded or failed: the provider's definite answer"
    )
    amount: Money
    attempts: int = Field(ge=0, description="calls made to the payment provider so far")
    last_error: str | None = Field(
        description="what went wrong with the latest attempt, in words safe to show"
    )
    refunds: list[RefundRead]
    created_at: datetime
    updated_at: datetime


class RefundView(BaseModel):
    """A refund as ops see it: its ids, the provider's own error, its attempts."""

    id: uuid.UUID
    reservation_id: uuid.UUID
    charge_id: uuid.UUID
    status: Literal["pending", "unknown", "succeeded", "refund_failed"]
    amount: Money
    attempts: int
    error: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, refund: Payment) -> RefundView:
        return cls.model_validate(
            {
                **{name: getattr(refund, name) for name in cls.model_fields if name != "amount"},
                "amount": Money(amount=refund.amount, currency=refund.currency),
            }
        )
