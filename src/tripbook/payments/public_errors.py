"""What a client may read about a payment attempt that went wrong: a short, fixed vocabulary.

The stored ``Payment.error`` is for operators: the gateway's own reason, an exception's
name, our note about the reservation. Clients get one of the texts below instead, so no
gateway detail, URL or token can ever reach them. While a charge is ``pending`` or
``unknown``, its error is one a worker (or reconciliation) is still retrying.
"""

from __future__ import annotations

TIMED_OUT = "The payment provider did not answer in time."
UNREACHABLE = "The payment provider could not be reached."
UNAVAILABLE = "The payment provider is temporarily unavailable."
DECLINED = "The card was declined."
NOT_ACCEPTED = "The payment provider did not accept the payment."
CLOSED = "The reservation closed before the payment was attempted."
WINDOW_CLOSED = "The payment window closed before the payment was attempted."
RETRYING = "Retrying."

# Gateway reasons that mean "the card said no" rather than "the provider had a problem".
CARD_DECLINES = frozenset(
    {"card_declined", "insufficient_funds", "expired_card", "incorrect_cvc", "do_not_honor"}
)
TIMEOUT_REASONS = frozenset({"processor_timeout", "http_408", "http_504"})


def public_error(status: str, error: str | None) -> str | None:
    """The client-safe text for a payment's stored error; None when nothing went wrong."""
    if error is None or status == "succeeded":
        return None
    if status in ("pending", "unknown"):
        return f"{_provider_problem(error) or UNAVAILABLE} {RETRYING}"
    if error.startswith("reservation "):
        return CLOSED
    if error.startswith("the payment window closed"):
        return WINDOW_CLOSED
    if error in CARD_DECLINES:
        return DECLINED
    return _provider_problem(error) or NOT_ACCEPTED


def _provider_problem(error: str) -> str | None:
    if error.startswith("timeout:") or error in TIMEOUT_REASONS:
        return TIMED_OUT
    if error.startswith("network:"):
        return UNREACHABLE
    if error.startswith("http_5") or error in {"processor_unavailable", "http_429"}:
        return UNAVAILABLE
    return None
