"""The gateway client: how answers map to outcomes, and what it sends (real sandbox)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support.sandboxes import PaymentSandbox, free_port
from tripbook.payments.gateway import (
    Approved,
    Declined,
    HttpPaymentGateway,
    RetryableFailure,
    result_from_response,
)
from tripbook.settings import Settings


def response(status: int, body: Any = None, *, text: str | None = None) -> httpx.Response:
    if text is not None:
        return httpx.Response(status, text=text)
    return httpx.Response(status, json=body)


class TestResultFromResponse:
    @pytest.mark.parametrize("status", [200, 201])
    def test_success_with_an_id_is_approved(self, status: int) -> None:
        assert result_from_response(response(status, {"id": "ch_1"})) == Approved("ch_1")

    @pytest.mark.parametrize(
        ("status", "body", "expected"),
        [
            (402, {"error": "card_declined"}, Declined("card_declined")),
            (400, {"error": "invalid_token"}, Declined("invalid_token")),
            (404, {"error": "no_such_charge"}, Declined("no_such_charge")),
            (409, {"error": "refund_exceeds_charge"}, Declined("refund_exceeds_charge")),
            (422, None, Declined("http_422")),
            (500, None, RetryableFailure("http_500")),
            (503, {"error": "processor_unavailable"}, RetryableFailure("processor_unavailable")),
            (504, {"error": "processor_timeout"}, RetryableFailure("processor_timeout")),
            (429, {"error": "slow_down"}, RetryableFailure("slow_down")),
            (408, None, RetryableFailure("http_408")),
        ],
    )
    def test_failures(self, status: int, body: Any, expected: object) -> None:
        assert result_from_response(response(status, body)) == expected

    @pytest.mark.parametrize(
        "answer", [response(201, {"status": "ok"}), response(200, text="<html>"), response(201, [])]
    )
    def test_unreadable_success_is_retried_not_trusted(self, answer: httpx.Response) -> None:
        # Retrying with the same idempotency key replays the charge; it never doubles it.
        assert isinstance(result_from_response(answer), RetryableFailure)

    def test_unreadable_error_body(self) -> None:
        assert result_from_response(response(502, text="Bad Gateway")) == RetryableFailure(
            "http_502"
        )


@pytest.fixture
async def gateway(
    settings: Settings, payment_sandbox: PaymentSandbox
) -> AsyncIterator[HttpPaymentGateway]:
    configured = settings.model_copy(
        update={"payment_gateway_url": payment_sandbox.url, "payment_gateway_timeout_s": 1.0}
    )
    async with HttpPaymentGateway.create_client(configured) as client:
        yield HttpPaymentGateway(client)


def key() -> str:
    return f"charge-{uuid.uuid4()}"


async def charge(gateway: HttpPaymentGateway, token: str, idempotency_key: str) -> Any:
    return await gateway.charge(
        amount=1234,
        currency="EUR",
        token=token,
        idempotency_key=idempotency_key,
        request_id="gateway-test-0001",
    )


class TestHttpPaymentGateway:
    async def test_approve_sends_key_and_request_id(
        self, gateway: HttpPaymentGateway, payment_sandbox: PaymentSandbox
    ) -> None:
        idempotency_key = key()

        result = await charge(gateway, "tok_approve", idempotency_key)

        assert isinstance(result, Approved)
        assert result.reference.startswith("ch_")
        stats = payment_sandbox.stats()
        assert stats["charges"][idempotency_key] == {"applied": 1, "attempts": 1}
        assert stats["last_request_ids"][-1] == "gateway-test-0001"

    async def test_the_same_key_never_charges_twice(
        self, gateway: HttpPaymentGateway, payment_sandbox: PaymentSandbox
    ) -> None:
        idempotency_key = key()

        first = await charge(gateway, "tok_approve", idempotency_key)
        second = await charge(gateway, "tok_approve", idempotency_key)

        assert first == second
        assert payment_sandbox.stats()["charges"][idempotency_key]["applied"] == 1

    async def test_decline(self, gateway: HttpPaymentGateway) -> None:
        assert await charge(gateway, "tok_decline", key()) == Declined("card_declined")

    async def test_unknown_token(self, gateway: HttpPaymentGateway) -> None:
        assert await charge(gateway, "tok_bogus", key()) == Declined("invalid_token")

    async def test_processor_unavailable_then_approved(self, gateway: HttpPaymentGateway) -> None:
        idempotency_key = key()

        first = await charge(gateway, "tok_fail_1_then_approve", idempotency_key)
        second = await charge(gateway, "tok_fail_1_then_approve", idempotency_key)

        assert first == RetryableFailure("processor_unavailable")
        assert isinstance(second, Approved)

    async def test_timeout_is_retryable(self, gateway: HttpPaymentGateway) -> None:
        # The sandbox hangs longer than the client's 1 s timeout.
        result = await charge(gateway, "tok_timeout", key())

        assert result == RetryableFailure("timeout: ReadTimeout")

    async def test_unreachable_is_retryable(self, settings: Settings) -> None:
        nowhere = settings.model_copy(
            update={"payment_gateway_url": f"http://127.0.0.1:{free_port()}"}
        )
        async with HttpPaymentGateway.create_client(nowhere) as client:
            result = await charge(HttpPaymentGateway(client), "tok_approve", key())

        assert result == RetryableFailure("network: ConnectError")

    async def test_refund(
        self, gateway: HttpPaymentGateway, payment_sandbox: PaymentSandbox
    ) -> None:
        charged = await charge(gateway, "tok_approve", key())
        assert isinstance(charged, Approved)
        refund_key = f"refund-{uuid.uuid4()}"

        refunded = await gateway.refund(
            charge_reference=charged.reference,
            amount=1234,
            idempotency_key=refund_key,
            request_id=None,
        )
        too_much = await gateway.refund(
            charge_reference=charged.reference,
            amount=1,
            idempotency_key=f"refund-{uuid.uuid4()}",
            request_id=None,
        )

        assert isinstance(refunded, Approved)
        assert refunded.reference.startswith("re_")
        assert too_much == Declined("refund_exceeds_charge")
        assert payment_sandbox.stats()["refunds"][refund_key] == {"applied": 1, "attempts": 1}
