"""The texts a client may see for a payment's stored error: never the stored text itself."""

from __future__ import annotations

import pytest

from tripbook.payments.public_errors import public_error


@pytest.mark.parametrize(
    ("status", "error", "shown"),
    [
        ("pending", None, None),
        ("succeeded", None, None),
        ("succeeded", "timeout: ReadTimeout", None),
        (
            "pending",
            "timeout: ReadTimeout",
            "The payment provider did not answer in time. Retrying.",
        ),
        ("pending", "processor_timeout", "The payment provider did not answer in time. Retrying."),
        (
            "pending",
            "network: ConnectError",
            "The payment provider could not be reached. Retrying.",
        ),
        ("pending", "http_502", "The payment provider is temporarily unavailable. Retrying."),
        (
            "pending",
            "weird gateway text",
            "The payment provider is temporarily unavailable. Retrying.",
        ),
        ("failed", "card_declined", "The card was declined."),
        ("failed", "network: ConnectError", "The payment provider could not be reached."),
        ("failed", "processor_unavailable", "The payment provider is temporarily unavailable."),
        ("failed", "invalid_token", "The payment provider did not accept the payment."),
        (
            "failed",
            "reservation expired before the charge was attempted",
            "The reservation closed before the payment was attempted.",
        ),
    ],
)
def test_public_error(status: str, error: str | None, shown: str | None) -> None:
    assert public_error(status, error) == shown
