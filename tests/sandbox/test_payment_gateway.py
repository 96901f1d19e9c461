"""The payment sandbox over real HTTP: the contract the PaymentGateway client relies on."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.sandboxes import PaymentSandbox, run_payment_sandbox
from tests.support.workers import eventually

TIMEOUT_DELAY_S = 1.0


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaymentSandbox]:
    log_dir = tmp_path_factory.mktemp("payment-sandbox")
    with run_payment_sandbox(log_dir, timeout_delay_s=TIMEOUT_DELAY_S) as sandbox:
        yield sandbox


@pytest.fixture
def http(gateway: PaymentSandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway.url, timeout=5.0) as client:
        yield client


def new_key() -> str:
    return f"test-{uuid.uuid4().hex}"


def charge_body(card: str = "tok_approve", amount: int = 1250) -> dict[str, Any]:
    return {"amount": amount, "currency": "EUR", "token": card}


def charge(
    http: httpx.Client, key: str, card: str = "tok_approve", amount: int = 1250
) -> httpx.Response:
    return http.post(
        "/v1/charges", json=charge_body(card, amount), headers={"Idempotency-Key": key}
    )


def refund(http: httpx.Client, key: str, charge_id: str, amount: int) -> httpx.Response:
    return http.post(
        "/v1/refunds",
        json={"charge_id": charge_id, "amount": amount},
        headers={"Idempotency-Key": key},
    )


class TestCharge:
    def test_approve(self, http: httpx.Client, gateway: PaymentSandbox) -> None:
        key = new_key()

        response = charge(http, key)

        assert response.status_code == 201
        body = response.json()
        assert body["id"].startswith("ch_")
        assert body == {
            "id": body["id"],
            "status": "succeeded",
            "amount": 1250,
            "currency": "EUR",
            "idempotency_key": key,
        }
        assert gateway.stats()["charges"][key] == {"applied": 1, "attempts": 1}

    def test_tok_ok_prefix_approves(self, http: httpx.Client) -> None:
        response = charge(http, new_key(), card="tok_ok_visa_4242")

        assert response.status_code == 201
        assert response.json()["status"] == "succeeded"

    def test_decline_is_final(self, http: httpx.Client, gateway: PaymentSandbox) -> None:
        key = new_key()

        first = charge(http, key, card="tok_decline")
        again = charge(http, key, card="tok_decline")

        assert first.status_code == 402
        assert first.json()["error"] == "card_declined"
        assert first.json()["message"]
        assert (again.status_code, again.json()) == (402, first.json())
        assert gateway.stats()["charges"][key] == {"applied": 0, "attempts": 2}

    def test_fail_twice_then_approve(self, http: httpx.Client, gateway: PaymentSandbox) -> None:
        key = new_key()

        responses = [charge(http, key, card="tok_fail_2_then_approve") for _ in range(3)]

        assert [r.status_code for r in responses] == [503, 503, 201]
        assert responses[0].json() == {"error": "processor_unavailable"}
        assert gateway.stats()["charges"][key] == {"applied": 1, "attempts": 3}

    def test_slow_token_waits_then_approves(self, http: httpx.Client) -> None:
        response = charge(http, new_key(), card="tok_slow_200")

        assert response.status_code == 201
        assert response.elapsed.total_seconds() >= 0.2

    def test_unknown_token(self, http: httpx.Client, gateway: PaymentSandbox) -> None:
        key = new_key()

        response = charge(http, key, card="tok_nonsense")

        assert (response.status_code, response.json()) == (400, {"error": "invalid_token"})
        assert key not in gateway.stats()["charges"]

    def test_missing_idempotency_key(self, http: httpx.Client) -> None:
        response = http.post("/v1/charges", json=charge_body())

        assert response.status_code == 400
        assert response.json() == {"error": "idempotency_key_required"}


class TestIdempotency:
    def test_replay_returns_stored_response(
        self, http: httpx.Client, gateway: PaymentSandbox
    ) -> None:
        key = new_key()

        first = charge(http, key)
        replay = charge(http, key)

        assert (replay.status_code, replay.json()) == (201, first.json())
        assert replay.headers["idempotent-replayed"] == "true"
        assert gateway.stats()["charges"][key] == {"applied": 1, "attempts": 2}

    def test_same_key_different_body(self, http: httpx.Client, gateway: PaymentSandbox) -> None:
        key = new_key()
        charge(http, key, amount=1000)

        response = charge(http, key, amount=2000)

        assert response.status_code == 409
        assert response.json() == {"error": "idempotency_key_mismatch"}
        assert gateway.stats()["charges"][key]["applied"] == 1

    async def test_concurrent_same_key_applies_once(self, gateway: PaymentSandbox) -> None:
        key = new_key()
        # A slow approval keeps the first request in flight while the other 19 arrive.
        body, headers = charge_body("tok_slow_100"), {"Idempotency-Key": key}

        async with httpx.AsyncClient(base_url=gateway.url, timeout=10.0) as client:
            responses = await asyncio.gather(
                *(client.post("/v1/charges", json=body, headers=headers) for _ in range(20))
            )

        assert {r.status_code for r in responses} == {201}
        assert len({r.json()["id"] for r in responses}) == 1
        assert gateway.stats()["charges"][key] == {"applied": 1, "attempts": 20}

    def test_timeout_is_not_final(self, http: httpx.Client, gateway: PaymentSandbox) -> None:
        key, body = new_key(), charge_body("tok_timeout")
        headers = {"Idempotency-Key": key}

        with pytest.raises(httpx.ReadTimeout):
            http.post("/v1/charges", json=body, headers=headers, timeout=0.3)
        patient = http.post("/v1/charges", json=body, headers=headers, timeout=10 * TIMEOUT_DELAY_S)

        assert patient.status_code == 504
        assert patient.json() == {"error": "processor_timeout"}
        assert "idempotent-replayed" not in patient.headers
        assert gateway.stats()["charges"][key] == {"applied": 0, "attempts": 2}


class TestRefund:
    @pytest.fixture
    def charge_id(self, http: httpx.Client) -> str:
        response = charge(http, new_key(), amount=1000)
        assert response.status_code == 201
        charge_id: str = response.json()["id"]
        return charge_id

    def test_refund(self, http: httpx.Client, gateway: PaymentSandbox, charge_id: str) -> None:
        key = new_key()

        response = refund(http, key, charge_id, 400)

        assert response.status_code == 201
        body = response.json()
        assert body["id"].startswith("re_")
        assert body == {
            "id": body["id"],
            "status": "succeeded",
            "charge_id": charge_id,
            "amount": 400,
        }
        assert gateway.stats()["refunds"][key] == {"applied": 1, "attempts": 1}

    def test_unknown_charge(self, http: httpx.Client) -> None:
        response = refund(http, new_key(), "ch_doesnotexist", 100)

        assert (response.status_code, response.json()) == (404, {"error": "no_such_charge"})

    def test_over_refund(self, http: httpx.Client, charge_id: str) -> None:
        assert refund(http, new_key(), charge_id, 600).status_code == 201

        over = refund(http, new_key(), charge_id, 401)
        rest = refund(http, new_key(), charge_id, 400)

        assert over.status_code == 409
        assert over.json() == {"error": "refund_exceeds_charge", "refundable": 400}
        assert rest.status_code == 201

    def test_replay_refunds_once(
        self, http: httpx.Client, gateway: PaymentSandbox, charge_id: str
    ) -> None:
        key = new_key()

        first = refund(http, key, charge_id, 1000)
        replay = refund(http, key, charge_id, 1000)

        assert (replay.status_code, replay.json()) == (201, first.json())
        assert gateway.stats()["refunds"][key] == {"applied": 1, "attempts": 2}
        # Had the replay refunded again, nothing would be left and this would be 409 too.
        assert refund(http, new_key(), charge_id, 1).status_code == 409

    def test_missing_idempotency_key(self, http: httpx.Client, charge_id: str) -> None:
        response = http.post("/v1/refunds", json={"charge_id": charge_id, "amount": 1})

        assert response.json() == {"error": "idempotency_key_required"}

    def test_slow_refunds_token(self, http: httpx.Client, gateway: PaymentSandbox) -> None:
        charged = charge(http, new_key(), card="tok_refund_slow_300", amount=1000)
        key = new_key()

        response = refund(http, key, charged.json()["id"], 1000)

        assert charged.status_code == 201
        assert charged.elapsed.total_seconds() < 0.3  # only its refunds are slow
        assert response.status_code == 201
        assert response.elapsed.total_seconds() >= 0.3
        assert gateway.stats()["refunds"][key] == {"applied": 1, "attempts": 1}


class TestLatency:
    @pytest.fixture
    def slow_gateway(self, gateway: PaymentSandbox) -> Iterator[PaymentSandbox]:
        gateway.set_latency(0.3)
        try:
            yield gateway
        finally:
            gateway.set_latency(0)

    def test_every_request_waits_then_is_handled(
        self, http: httpx.Client, slow_gateway: PaymentSandbox
    ) -> None:
        charged = charge(http, new_key(), amount=1000)
        refunded = refund(http, new_key(), charged.json()["id"], 1000)

        assert [charged.status_code, refunded.status_code] == [201, 201]
        assert charged.elapsed.total_seconds() >= 0.3
        assert refunded.elapsed.total_seconds() >= 0.3

    async def test_a_caller_that_gave_up_is_still_charged(
        self, http: httpx.Client, slow_gateway: PaymentSandbox
    ) -> None:
        key = new_key()

        with pytest.raises(httpx.ReadTimeout):
            http.post(
                "/v1/charges", json=charge_body(), headers={"Idempotency-Key": key}, timeout=0.1
            )
        # Handled once its wait is over, though nobody is listening anymore.
        await eventually(
            lambda: slow_gateway.stats()["charges"].get(key, {}).get("applied") == 1,
            what="the abandoned charge to be applied",
        )
        slow_gateway.set_latency(0)
        retried = charge(http, key)

        assert retried.headers["idempotent-replayed"] == "true"
        assert slow_gateway.stats()["charges"][key] == {"applied": 1, "attempts": 2}

    def test_off_again(self, http: httpx.Client, slow_gateway: PaymentSandbox) -> None:
        slow_gateway.set_latency(0)

        assert charge(http, new_key()).elapsed.total_seconds() < 0.3

    @pytest.mark.parametrize("content", [b"{}", b'{"delay_s": -1}', b'{"delay_s": "1"}', b"[]"])
    def test_bad_request(self, http: httpx.Client, content: bytes) -> None:
        response = http.put("/_sandbox/latency", content=content)

        assert (response.status_code, response.json()) == (400, {"error": "bad_request"})

    def test_reset_ends_it(self, http: httpx.Client, slow_gateway: PaymentSandbox) -> None:
        slow_gateway.reset()

        assert charge(http, new_key()).elapsed.total_seconds() < 0.3


class TestBadRequest:
    @pytest.mark.parametrize(
        "content",
        [
            b"{",
            b"\xff\xfe",
            b"[]",
            b'{"amount": "1250", "currency": "EUR", "token": "tok_approve"}',
            b'{"amount": 0, "currency": "EUR", "token": "tok_approve"}',
            b'{"amount": -5, "currency": "EUR", "token": "tok_approve"}',
            b'{"amount": true, "currency": "EUR", "token": "tok_approve"}',
            b'{"amount": 12.5, "currency": "EUR", "token": "tok_approve"}',
            b'{"amount": 1250, "currency": "eur", "token": "tok_approve"}',
            b'{"amount": 1250, "currency": "EUR"}',
            b'{"amount": 1250, "currency": "EUR", "token": 7}',
        ],
    )
    def test_charge(self, http: httpx.Client, content: bytes) -> None:
        response = http.post(
            "/v1/charges",
            content=content,
            headers={"Idempotency-Key": new_key(), "Content-Type": "application/json"},
        )

        assert (response.status_code, response.json()) == (400, {"error": "bad_request"})

    @pytest.mark.parametrize(
        "content", [b"nope", b'{"charge_id": 5, "amount": 1}', b'{"charge_id": "ch_x"}']
    )
    def test_refund(self, http: httpx.Client, content: bytes) -> None:
        response = http.post("/v1/refunds", content=content, headers={"Idempotency-Key": new_key()})

        assert (response.status_code, response.json()) == (400, {"error": "bad_request"})


class TestSandboxEndpoints:
    def test_request_id_recorded_and_logged(
        self, http: httpx.Client, gateway: PaymentSandbox
    ) -> None:
        request_id = f"req-{uuid.uuid4().hex}"

        http.post(
            "/v1/charges",
            json=charge_body(),
            headers={"Idempotency-Key": new_key(), "X-Request-ID": request_id},
        )

        assert gateway.stats()["last_request_ids"][-1] == request_id
        # The line is written before the response starts, so it is there already.
        assert f"request_id={request_id}" in gateway.log()

    def test_keeps_last_50_request_ids(self, http: httpx.Client, gateway: PaymentSandbox) -> None:
        request_ids = [f"req-{i}-{uuid.uuid4().hex}" for i in range(55)]

        for request_id in request_ids:
            http.get("/healthz", headers={"X-Request-ID": request_id})

        assert gateway.stats()["last_request_ids"] == request_ids[-50:]

    def test_reset(self, http: httpx.Client, gateway: PaymentSandbox) -> None:
        charge_id = charge(http, new_key()).json()["id"]

        response = http.post("/_sandbox/reset")

        assert response.status_code == 204
        assert gateway.stats() == {"charges": {}, "refunds": {}, "last_request_ids": []}
        assert refund(http, new_key(), charge_id, 1).status_code == 404

    def test_healthz(self, http: httpx.Client) -> None:
        response = http.get("/healthz")

        assert (response.status_code, response.json()) == (200, {"status": "ok"})

    def test_unknown_path_answers_json(self, http: httpx.Client) -> None:
        response = http.get("/v1/nothing-here")

        assert (response.status_code, response.json()) == (404, {"error": "not_found"})
