"""The gateway client: how answers map to outcomes, and what it sends (real sandbox)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from tests.support.sandboxes import PaymentSandbox, free_port
from tests.support.workers import eventually
from tripbook.payments.gateway import (
    Approved,
    Declined,
    GatewayRecord,
    HttpPaymentGateway,
    Misconfigured,
    RetryableFailure,
    Unseen,
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
            # The key is still being processed: ask again, never a decline.
            (409, {"error": "idempotency_key_in_use"}, RetryableFailure("idempotency_key_in_use")),
            # Our credentials, URL or request are wrong, not the card.
            (401, {"error": "bad_api_key"}, Misconfigured("http_401: bad_api_key")),
            (403, None, Misconfigured("http_403: http_403")),
            (404, {"error": "no_such_charge"}, Misconfigured("http_404: no_such_charge")),
            (422, None, Misconfigured("http_422: http_422")),
            (418, None, Misconfigured("http_418: http_418")),
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
        assert too_much == RetryableFailure("refund_exceeds_charge")  # a 409: never final
        assert payment_sandbox.stats()["refunds"][refund_key] == {"applied": 1, "attempts": 1}


class TestMisconfigured:
    async def test_a_wrong_url_is_our_error_logged_and_counted(
        self,
        app: FastAPI,  # configures logging, which captured_logs reads
        settings: Settings,
        payment_sandbox: PaymentSandbox,
        captured_logs: Callable[[], list[dict[str, Any]]],
    ) -> None:
        wrong = settings.model_copy(update={"payment_gateway_url": f"{payment_sandbox.url}/v2"})
        before = REGISTRY.get_sample_value("tripbook_payment_gateway_misconfigured_total") or 0

        async with HttpPaymentGateway.create_client(wrong) as client:
            result = await charge(HttpPaymentGateway(client), "tok_approve", key())

        assert result == Misconfigured("http_404: not_found")
        after = REGISTRY.get_sample_value("tripbook_payment_gateway_misconfigured_total")
        assert after == before + 1
        [alert] = [line for line in captured_logs() if line["event"] == "gateway_misconfigured"]
        assert (alert["level"], alert["detail"]) == ("error", "http_404: not_found")


class TestLookup:
    async def test_a_charged_key(self, gateway: HttpPaymentGateway) -> None:
        idempotency_key = key()
        charged = await charge(gateway, "tok_approve", idempotency_key)

        found = await gateway.find_charge(idempotency_key=idempotency_key, request_id=None)

        assert found == charged

    async def test_a_declined_key(self, gateway: HttpPaymentGateway) -> None:
        idempotency_key = key()
        await charge(gateway, "tok_decline", idempotency_key)

        found = await gateway.find_charge(idempotency_key=idempotency_key, request_id=None)

        assert found == Declined("card_declined")

    async def test_a_key_the_gateway_never_saw(self, gateway: HttpPaymentGateway) -> None:
        assert await gateway.find_charge(idempotency_key=key(), request_id=None) == Unseen()

    async def test_a_key_that_only_failed_is_unseen(self, gateway: HttpPaymentGateway) -> None:
        idempotency_key = key()
        await charge(gateway, "tok_fail_3_then_approve", idempotency_key)

        assert await gateway.find_charge(idempotency_key=idempotency_key, request_id=None) == (
            Unseen()
        )

    async def test_a_key_in_flight_is_not_known_yet(
        self, gateway: HttpPaymentGateway, payment_sandbox: PaymentSandbox
    ) -> None:
        idempotency_key = key()
        in_flight = asyncio.create_task(charge(gateway, "tok_slow_800", idempotency_key))
        await eventually(
            lambda: idempotency_key in payment_sandbox.stats()["charges"], what="the charge"
        )

        found = await gateway.find_charge(idempotency_key=idempotency_key, request_id=None)

        assert found == RetryableFailure("gateway_processing")
        assert isinstance(await in_flight, Approved)

    async def test_listing_charges_and_refunds(self, gateway: HttpPaymentGateway) -> None:
        idempotency_key, refund_key = key(), f"refund-{uuid.uuid4()}"
        charged = await charge(gateway, "tok_approve", idempotency_key)
        assert isinstance(charged, Approved)
        refunded = await gateway.refund(
            charge_reference=charged.reference,
            amount=1234,
            idempotency_key=refund_key,
            request_id=None,
        )
        assert isinstance(refunded, Approved)

        charges = {c.idempotency_key: c for c in await gateway.list_charges()}
        refunds = {r.idempotency_key: r for r in await gateway.list_refunds()}

        assert charges[idempotency_key] == GatewayRecord(
            idempotency_key=idempotency_key,
            status="succeeded",
            amount=1234,
            reference=charged.reference,
            refunded=1234,
        )
        assert refunds[refund_key] == GatewayRecord(
            idempotency_key=refund_key,
            status="succeeded",
            amount=1234,
            reference=refunded.reference,
            charge_reference=charged.reference,
        )
