"""The card processor behind an interface: charges and refunds, mapped to domain outcomes.

    Approved          the money moved; ``reference`` is the gateway's id for it
    Declined          final: the card, the token or the request was refused
    RetryableFailure  nothing is known to have happened: timeouts, 5xx, 429, network

Every call carries the payment's idempotency key, so retrying a ``RetryableFailure`` can
never move the money twice, and the request id, so the gateway's logs join ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from tripbook.core.logging import get_logger
from tripbook.settings import Settings

log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Approved:
    reference: str


@dataclass(frozen=True, slots=True)
class Declined:
    reason: str


@dataclass(frozen=True, slots=True)
class RetryableFailure:
    reason: str


GatewayResult = Approved | Declined | RetryableFailure

# Statuses that say "try again later" rather than "no".
RETRYABLE_STATUSES = frozenset({408, 425, 429})


class PaymentGateway(Protocol):
    async def charge(
        self,
        *,
        amount: int,
        currency: str,
        token: str,
        idempotency_key: str,
        request_id: str | None,
    ) -> GatewayResult: ...

    async def refund(
        self, *, charge_reference: str, amount: int, idempotency_key: str, request_id: str | None
    ) -> GatewayResult: ...


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def result_from_response(response: httpx.Response) -> GatewayResult:
    """Map the gateway's answer to an outcome; only an unambiguous "no" is final."""
    body = _body(response)
    status = response.status_code
    if response.is_success:
        reference = body.get("id")
        if isinstance(reference, str) and reference:
            return Approved(reference)
        # A 2xx we cannot read: retrying with the same key replays it, so nothing doubles.
        return RetryableFailure(f"http_{status}_unreadable")
    reason = str(body.get("error") or f"http_{status}")
    if status >= 500 or status in RETRYABLE_STATUSES:
        return RetryableFailure(reason)
    return Declined(reason)


class HttpPaymentGateway:
    """The gateway's HTTP API over one pooled httpx client, owned by the caller."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    @staticmethod
    def create_client(settings: Settings) -> httpx.AsyncClient:
        timeout = settings.payment_gateway_timeout_s
        return httpx.AsyncClient(
            base_url=settings.payment_gateway_url,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
            headers={"User-Agent": "tripbook"},
        )

    async def charge(
        self,
        *,
        amount: int,
        currency: str,
        token: str,
        idempotency_key: str,
        request_id: str | None,
    ) -> GatewayResult:
        return await self._post(
            "/v1/charges",
            {"amount": amount, "currency": currency, "token": token},
            idempotency_key=idempotency_key,
            request_id=request_id,
        )

    async def refund(
        self, *, charge_reference: str, amount: int, idempotency_key: str, request_id: str | None
    ) -> GatewayResult:
        return await self._post(
            "/v1/refunds",
            {"charge_id": charge_reference, "amount": amount},
            idempotency_key=idempotency_key,
            request_id=request_id,
        )

    async def _post(
        self,
        path: str,
        body: dict[str, Any],
        *,
        idempotency_key: str,
        request_id: str | None,
    ) -> GatewayResult:
        headers = {"Idempotency-Key": idempotency_key}
        if request_id:
            headers["X-Request-ID"] = request_id
        try:
            response = await self.client.post(path, json=body, headers=headers)
        except httpx.TimeoutException as exc:
            result: GatewayResult = RetryableFailure(f"timeout: {type(exc).__name__}")
        except httpx.TransportError as exc:
            result = RetryableFailure(f"network: {type(exc).__name__}")
        else:
            result = result_from_response(response)
        log.info("gateway_call", path=path, outcome=type(result).__name__, detail=_detail(result))
        return result


def _detail(result: GatewayResult) -> str:
    return result.reference if isinstance(result, Approved) else result.reason
