"""The card processor behind an interface: charges and refunds, mapped to domain outcomes.

    Approved          the money moved; ``reference`` is the gateway's id for it
    Declined          final: the gateway definitely said no (402, or 400 for the card)
    RetryableFailure  the outcome is unknown: timeouts, resets, 5xx, 408, 409 (the key is
                      still being processed), 425, 429, an unreadable 2xx
    Misconfigured     401/403/404/422 and other 4xx: *our* request or credentials are
                      wrong, not the card. Retried like a failure, and alerted on
    Unseen            (lookups only) the gateway has no record of the key

Every call carries the payment's idempotency key, so retrying anything but a final
answer can never move the money twice, and the request id, so the gateway's logs join ours.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import httpx

from tripbook.core.logging import get_logger
from tripbook.core.metrics import GATEWAY_MISCONFIGURED
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


@dataclass(frozen=True, slots=True)
class Misconfigured:
    reason: str


@dataclass(frozen=True, slots=True)
class Unseen:
    """A lookup found nothing: the gateway never handled a request with this key."""


GatewayResult = Approved | Declined | RetryableFailure | Misconfigured
LookupResult = GatewayResult | Unseen
R = TypeVar("R", bound=LookupResult)


@dataclass(frozen=True, slots=True)
class GatewayRecord:
    """A charge or refund as the gateway lists it, for the ledger report."""

    idempotency_key: str
    status: str  # succeeded, failed or processing
    amount: int
    reference: str | None
    charge_reference: str | None = None  # refunds: the charge they return
    refunded: int = 0  # charges: how much of it was refunded


# Statuses that say "try again later" rather than "no".
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})
# Statuses that say "no" about the card or the payment itself.
DECLINE_STATUSES = frozenset({400, 402})


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

    async def find_charge(
        self, *, idempotency_key: str, request_id: str | None
    ) -> LookupResult: ...

    async def refund(
        self, *, charge_reference: str, amount: int, idempotency_key: str, request_id: str | None
    ) -> GatewayResult: ...

    async def list_charges(self) -> list[GatewayRecord]: ...

    async def list_refunds(self) -> list[GatewayRecord]: ...


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
    if status in DECLINE_STATUSES:
        return Declined(reason)
    return Misconfigured(f"http_{status}: {reason}")


def result_from_record(item: Any) -> LookupResult:
    """A lookup's item as the outcome the original request had (or still has pending)."""
    if not isinstance(item, dict):
        return RetryableFailure("lookup_unreadable")
    status, reference = item.get("status"), item.get("id")
    if status == "succeeded" and isinstance(reference, str) and reference:
        return Approved(reference)
    if status == "failed":
        return Declined(str(item.get("error") or "declined"))
    return RetryableFailure(f"gateway_{status}")


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
        body = {"amount": amount, "currency": currency, "token": token}
        sent = await self._send("/v1/charges", body, idempotency_key, request_id)
        return self._logged("/v1/charges", _outcome(sent, result_from_response))

    async def refund(
        self, *, charge_reference: str, amount: int, idempotency_key: str, request_id: str | None
    ) -> GatewayResult:
        body = {"charge_id": charge_reference, "amount": amount}
        sent = await self._send("/v1/refunds", body, idempotency_key, request_id)
        return self._logged("/v1/refunds", _outcome(sent, result_from_response))

    async def find_charge(self, *, idempotency_key: str, request_id: str | None) -> LookupResult:
        sent = await self._send("/v1/charges", None, idempotency_key, request_id)
        return self._logged("/v1/charges?idempotency_key", _outcome(sent, _lookup_result))

    async def list_charges(self) -> list[GatewayRecord]:
        return [_record(item) for item in await self._list("/v1/charges")]

    async def list_refunds(self) -> list[GatewayRecord]:
        return [_record(item) for item in await self._list("/v1/refunds")]

    async def _list(self, path: str) -> list[dict[str, Any]]:
        response = await self.client.get(path)
        response.raise_for_status()
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    async def _send(
        self,
        path: str,
        body: dict[str, Any] | None,
        idempotency_key: str,
        request_id: str | None,
    ) -> httpx.Response | RetryableFailure:
        """POST ``body`` with the key, or look the key up (GET) when there is no body."""
        headers = {"Idempotency-Key": idempotency_key}
        if request_id:
            headers["X-Request-ID"] = request_id
        try:
            if body is None:
                params = {"idempotency_key": idempotency_key}
                return await self.client.get(path, params=params, headers=headers)
            return await self.client.post(path, json=body, headers=headers)
        except httpx.TimeoutException as exc:
            return RetryableFailure(f"timeout: {type(exc).__name__}")
        except httpx.TransportError as exc:
            return RetryableFailure(f"network: {type(exc).__name__}")

    @staticmethod
    def _logged(path: str, result: R) -> R:
        detail = "" if isinstance(result, Unseen) else _detail(result)
        log.info("gateway_call", path=path, outcome=type(result).__name__, detail=detail)
        if isinstance(result, Misconfigured):
            # Our credentials, URL or request are wrong: every payment waits until it is fixed.
            GATEWAY_MISCONFIGURED.inc()
            log.error("gateway_misconfigured", path=path, detail=result.reason)
        return result


def _outcome(
    sent: httpx.Response | RetryableFailure, read: Callable[[httpx.Response], R]
) -> R | RetryableFailure:
    return sent if isinstance(sent, RetryableFailure) else read(sent)


def _lookup_result(response: httpx.Response) -> LookupResult:
    """A lookup's answer: the outcome the key's original request had, or ``Unseen``."""
    if not response.is_success:
        return result_from_response(response)
    items = _body(response).get("items")
    if not isinstance(items, list) or len(items) > 1:
        return RetryableFailure(f"http_{response.status_code}_unreadable")
    return result_from_record(items[0]) if items else Unseen()


def _record(item: dict[str, Any]) -> GatewayRecord:
    """A charge or a refund as the gateway lists it (a refund names its charge)."""
    return GatewayRecord(
        idempotency_key=item["idempotency_key"],
        status=item["status"],
        amount=item["amount"],
        reference=item.get("id"),
        charge_reference=item.get("charge_id"),
        refunded=item.get("refunded", 0),
    )


def _detail(result: GatewayResult) -> str:
    return result.reference if isinstance(result, Approved) else result.reason
