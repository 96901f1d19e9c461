"""The payment sandbox over real HTTP: the contract the PaymentGateway client relies on."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support.sandboxes import PaymentSandbox, run_payment_sandbox
from tests.support.workers import eventually

TIMEOUT_DELAY_S = 1.0
VERY_SLOW_S = 60.0  # a latency no request of these tests waits out


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


def refund(
    http: httpx.Client, key: str, charge_id: str, amount: int, *, timeout: float | None = None
) -> httpx.Response:
    return http.post(
        "/v1/refunds",
        json={"charge_id": charge_id, "amount": amount},
        headers={"Idempotency-Key": key},
        timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
    )


async def in_flight(gateway: PaymentSandbox, key: str) -> None:
    """Wait until the gateway is processing the charge under ``key``."""
    await eventually(
        lambda: [c["status"] for c in gateway.charges(key)] == ["processing"],
        timeout_s=5.0,
        what=f"charge {key} to be in flight",
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

    def test_busy_twice_then_approve(self, http: httpx.Client, gateway: PaymentSandbox) -> None:
        key = new_key()

        first = charge(http, key, card="tok_busy_2_then_approve")
        listed_while_busy = gateway.charges(key)
        second = charge(http, key, card="tok_busy_2_then_approve")
        third = charge(http, key, card="tok_busy_2_then_approve")

        assert (first.status_code, first.json()) == (409, {"error": "idempotency_key_in_use"})
        assert (second.status_code, second.json()) == (409, {"error": "idempotency_key_in_use"})
        assert third.status_code == 201
        assert listed_while_busy == []  # a 409 is not final: nothing happened yet
        assert gateway.stats()["charges"][key] == {"applied": 1, "attempts": 3}

    async def test_hang_after_apply(self, gateway: PaymentSandbox) -> None:
        key = new_key()
        body = charge_body("tok_hang_after_apply_3000")
        headers = {"Idempotency-Key": key}

        async with httpx.AsyncClient(base_url=gateway.url, timeout=10.0) as client:
            late = asyncio.ensure_future(client.post("/v1/charges", json=body, headers=headers))
            await eventually(
                lambda: gateway.stats()["charges"].get(key, {}).get("applied") == 1,
                timeout_s=5.0,
                what="the charge to be applied",
            )
            answered_yet = late.done()
            replaying = asyncio.ensure_future(
                client.post("/v1/charges", json=body, headers=headers)
            )
            first_done, _ = await asyncio.wait(
                {late, replaying}, return_when=asyncio.FIRST_COMPLETED
            )
            replay, answer = await replaying, await late

        assert answered_yet is False
        # The replay got the stored answer while the original caller still waited for it.
        assert first_done == {replaying}
        assert (replay.status_code, replay.json()) == (201, answer.json())
        assert replay.headers["idempotent-replayed"] == "true"
        assert answer.status_code == 201
        assert "idempotent-replayed" not in answer.headers
        assert answer.elapsed.total_seconds() >= 3.0
        assert gateway.stats()["charges"][key] == {"applied": 1, "attempts": 2}

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

        assert response.status_code == 422
        assert response.json() == {"error": "idempotency_key_mismatch"}
        assert gateway.stats()["charges"][key] == {"applied": 1, "attempts": 1}

    async def test_concurrent_same_key_is_409_and_applies_once(
        self, http: httpx.Client, gateway: PaymentSandbox
    ) -> None:
        key = new_key()

        async with httpx.AsyncClient(base_url=gateway.url, timeout=10.0) as client:
            first = asyncio.ensure_future(
                client.post(
                    "/v1/charges",
                    json=charge_body("tok_slow_1000"),
                    headers={"Idempotency-Key": key},
                )
            )
            await in_flight(gateway, key)
            second = charge(http, key, card="tok_slow_1000")
            done = await first

        assert (second.status_code, second.json()) == (409, {"error": "idempotency_key_in_use"})
        assert "idempotent-replayed" not in second.headers
        assert done.status_code == 201
        assert gateway.stats()["charges"][key] == {"applied": 1, "attempts": 2}
        # The 409 was not final: a retry now gets the charge the first request made.
        retried = charge(http, key, card="tok_slow_1000")
        assert (retried.status_code, retried.json()) == (201, done.json())
        assert retried.headers["idempotent-replayed"] == "true"

    async def test_timeout_is_not_final(self, http: httpx.Client, gateway: PaymentSandbox) -> None:
        key, body = new_key(), charge_body("tok_timeout")
        headers = {"Idempotency-Key": key}

        with pytest.raises(httpx.ReadTimeout):
            http.post("/v1/charges", json=body, headers=headers, timeout=0.3)
        # The abandoned request still hangs at the gateway: a retry now is turned away...
        impatient = http.post("/v1/charges", json=body, headers=headers)
        await eventually(
            lambda: gateway.charges(key) == [],
            timeout_s=5 * TIMEOUT_DELAY_S,
            what="the abandoned request to time out",
        )
        # ...and once it timed out (not final), the next one is handled afresh.
        patient = http.post("/v1/charges", json=body, headers=headers, timeout=10 * TIMEOUT_DELAY_S)

        assert (impatient.status_code, impatient.json()) == (
            409,
            {"error": "idempotency_key_in_use"},
        )
        assert patient.status_code == 504
        assert patient.json() == {"error": "processor_timeout"}
        assert "idempotent-replayed" not in patient.headers
        assert gateway.stats()["charges"][key] == {"applied": 0, "attempts": 3}


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

    def test_over_refund(self, http: httpx.Client, gateway: PaymentSandbox, charge_id: str) -> None:
        assert refund(http, new_key(), charge_id, 600).status_code == 201
        over_key = new_key()

        over = refund(http, over_key, charge_id, 401)
        rest = refund(http, new_key(), charge_id, 400)

        assert over.status_code == 409
        assert over.json() == {"error": "refund_exceeds_charge", "refundable": 400}
        assert rest.status_code == 201
        # A 409 is never final, so the processor shows nothing under that key.
        assert gateway.refunds(over_key) == []

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
        assert response.status_code == 201
        assert response.elapsed.total_seconds() >= 0.3
        assert gateway.stats()["refunds"][key] == {"applied": 1, "attempts": 1}

    def test_slow_refunds_token_charges_at_once(
        self, http: httpx.Client, gateway: PaymentSandbox
    ) -> None:
        """Only the refunds wait: with a wait of ten minutes, the charge is still answered
        within the client's few seconds, while a refund of it stays in flight."""
        charge_key, refund_key = new_key(), new_key()
        charged = charge(http, charge_key, card="tok_refund_slow_600000", amount=1000)
        assert charged.status_code == 201

        with pytest.raises(httpx.ReadTimeout):
            refund(http, refund_key, charged.json()["id"], 1000, timeout=1.0)

        assert [r["status"] for r in gateway.refunds(refund_key)] == ["processing"]
        assert [c["refunded"] for c in gateway.charges(charge_key)] == [0]

    def test_refuse_refunds_token(self, http: httpx.Client, gateway: PaymentSandbox) -> None:
        charge_key = new_key()
        charged = charge(http, charge_key, card="tok_refund_refuse_2", amount=1000)
        charge_id = charged.json()["id"]
        first_key, second_key, third_key = new_key(), new_key(), new_key()

        first = refund(http, first_key, charge_id, 1000)
        replayed = refund(http, first_key, charge_id, 1000)
        second = refund(http, second_key, charge_id, 1000)
        third = refund(http, third_key, charge_id, 1000)

        assert charged.status_code == 201
        assert (first.status_code, first.json()) == (402, {"error": "refund_declined"})
        # Final for its key: the replay does not count as one of the N refused requests.
        assert (replayed.status_code, replayed.json()) == (402, {"error": "refund_declined"})
        assert replayed.headers["idempotent-replayed"] == "true"
        assert (second.status_code, second.json()) == (402, {"error": "refund_declined"})
        assert third.status_code == 201
        stats = gateway.stats()["refunds"]
        assert stats[first_key] == {"applied": 0, "attempts": 2}
        assert stats[second_key] == {"applied": 0, "attempts": 1}
        assert stats[third_key] == {"applied": 1, "attempts": 1}
        assert [c["refunded"] for c in gateway.charges(charge_key)] == [1000]


class TestLatency:
    @pytest.fixture
    def slow_gateway(self, gateway: PaymentSandbox) -> Iterator[PaymentSandbox]:
        gateway.set_latency(0.3)
        try:
            yield gateway
        finally:
            gateway.set_latency(0)

    @pytest.fixture
    def very_slow_gateway(self, gateway: PaymentSandbox) -> Iterator[PaymentSandbox]:
        """Slower than any client here waits (``http``: 5 s), so an answer means no wait."""
        gateway.set_latency(VERY_SLOW_S)
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

    def test_replays_wait_too(self, http: httpx.Client, slow_gateway: PaymentSandbox) -> None:
        key = new_key()
        first = charge(http, key)

        replay = charge(http, key)

        assert replay.headers["idempotent-replayed"] == "true"
        assert (replay.status_code, replay.json()) == (201, first.json())
        assert replay.elapsed.total_seconds() >= 0.3

    def test_off_again(self, http: httpx.Client, very_slow_gateway: PaymentSandbox) -> None:
        very_slow_gateway.set_latency(0)

        # Answered within the client's timeout: it cannot have waited VERY_SLOW_S.
        assert charge(http, new_key()).status_code == 201

    @pytest.mark.parametrize("content", [b"{}", b'{"delay_s": -1}', b'{"delay_s": "1"}', b"[]"])
    def test_bad_request(self, http: httpx.Client, content: bytes) -> None:
        response = http.put("/_sandbox/latency", content=content)

        assert (response.status_code, response.json()) == (400, {"error": "bad_request"})

    def test_reset_ends_it(self, http: httpx.Client, very_slow_gateway: PaymentSandbox) -> None:
        very_slow_gateway.reset()

        assert charge(http, new_key()).status_code == 201  # as above


def send_until_each_fault(
    gateway: PaymentSandbox, send: Callable[[str], httpx.Response]
) -> dict[str, str]:
    """Send with fresh keys (faults at rate 1) until one request met a fault before being
    processed and one after; returns the key of each. Which point a draw hits is up to the
    seeded random generator, so the stats say which one it was."""
    keys: dict[str, str] = {}
    for _ in range(30):
        injected = gateway.stats()["faults_injected"]
        key = new_key()
        response = send(key)
        now = gateway.stats()["faults_injected"]
        point = "before" if now["before"] == injected["before"] + 1 else "after"
        assert now == {**injected, point: injected[point] + 1}
        assert (response.status_code, response.json()) == (503, {"error": "processor_unavailable"})
        keys.setdefault(point, key)
        if len(keys) == 2:
            return keys
    raise AssertionError(f"30 faults, all {list(keys)}")


class TestFaults:
    @pytest.fixture
    def faulty_gateway(self, gateway: PaymentSandbox) -> Iterator[PaymentSandbox]:
        gateway.set_faults(1, seed=1234)
        try:
            yield gateway
        finally:
            gateway.set_faults(0)

    def test_charge_before_and_after(
        self, http: httpx.Client, faulty_gateway: PaymentSandbox
    ) -> None:
        keys = send_until_each_fault(faulty_gateway, lambda key: charge(http, key))
        faulty_gateway.set_faults(0)

        stats = faulty_gateway.stats()["charges"]
        assert stats[keys["before"]] == {"applied": 0, "attempts": 1}
        assert stats[keys["after"]] == {"applied": 1, "attempts": 1}
        assert faulty_gateway.charges(keys["before"]) == []
        [after] = faulty_gateway.charges(keys["after"])
        assert after["status"] == "succeeded"
        # The "after" charge went through: a retry learns of it, and charges nothing more.
        replay = charge(http, keys["after"])
        assert replay.status_code == 201
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.json()["id"] == after["id"]
        # The "before" one never happened: a retry is handled afresh.
        retried = charge(http, keys["before"])
        assert retried.status_code == 201
        assert "idempotent-replayed" not in retried.headers
        assert faulty_gateway.stats()["charges"][keys["before"]] == {"applied": 1, "attempts": 2}

    def test_refund_before_and_after(
        self, http: httpx.Client, faulty_gateway: PaymentSandbox
    ) -> None:
        faulty_gateway.set_faults(0)
        charge_id = charge(http, new_key(), amount=1000).json()["id"]
        faulty_gateway.set_faults(1, seed=99)

        keys = send_until_each_fault(faulty_gateway, lambda key: refund(http, key, charge_id, 10))
        faulty_gateway.set_faults(0)

        stats = faulty_gateway.stats()["refunds"]
        assert stats[keys["before"]] == {"applied": 0, "attempts": 1}
        assert stats[keys["after"]] == {"applied": 1, "attempts": 1}
        assert faulty_gateway.refunds(keys["before"]) == []
        assert [r["status"] for r in faulty_gateway.refunds(keys["after"])] == ["succeeded"]
        replay = refund(http, keys["after"], charge_id, 10)
        assert (replay.status_code, replay.headers["idempotent-replayed"]) == (201, "true")

    def test_same_seed_same_faults(
        self, http: httpx.Client, faulty_gateway: PaymentSandbox
    ) -> None:
        def points() -> list[str]:
            faulty_gateway.set_faults(1, seed=7)
            seen = []
            for _ in range(8):
                injected = faulty_gateway.stats()["faults_injected"]
                charge(http, new_key())
                now = faulty_gateway.stats()["faults_injected"]
                seen.append("before" if now["before"] > injected["before"] else "after")
            return seen

        first = points()

        assert points() == first
        assert set(first) == {"before", "after"}

    def test_replays_and_mismatches_are_spared(
        self, http: httpx.Client, gateway: PaymentSandbox
    ) -> None:
        key = new_key()
        first = charge(http, key)
        gateway.set_faults(1, seed=5)
        try:
            injected = gateway.stats()["faults_injected"]
            replay = charge(http, key)
            mismatch = charge(http, key, amount=1)
            assert gateway.stats()["faults_injected"] == injected
        finally:
            gateway.set_faults(0)

        assert (replay.status_code, replay.json()) == (201, first.json())
        assert mismatch.status_code == 422

    def test_off_again(self, http: httpx.Client, faulty_gateway: PaymentSandbox) -> None:
        faulty_gateway.set_faults(0)

        assert charge(http, new_key()).status_code == 201

    def test_reset_ends_it(self, http: httpx.Client, faulty_gateway: PaymentSandbox) -> None:
        assert charge(http, new_key()).status_code == 503

        faulty_gateway.reset()

        assert charge(http, new_key()).status_code == 201
        assert faulty_gateway.stats()["faults_injected"] == {"before": 0, "after": 0}

    def test_answer(self, http: httpx.Client, gateway: PaymentSandbox) -> None:
        try:
            response = http.put("/_sandbox/faults", json={"error_rate": 0.25, "seed": 3})
        finally:
            gateway.set_faults(0)

        assert (response.status_code, response.json()) == (200, {"error_rate": 0.25, "seed": 3})

    @pytest.mark.parametrize(
        "content",
        [
            b"{}",
            b"[]",
            b'{"error_rate": -0.1}',
            b'{"error_rate": 1.5}',
            b'{"error_rate": NaN}',
            b'{"error_rate": "0.5"}',
            b'{"error_rate": true}',
            b'{"error_rate": 0.5, "seed": "7"}',
            b'{"error_rate": 0.5, "seed": 1.5}',
            b'{"error_rate": 0.5, "seed": false}',
        ],
    )
    def test_bad_request(self, http: httpx.Client, content: bytes) -> None:
        response = http.put("/_sandbox/faults", content=content)

        assert (response.status_code, response.json()) == (400, {"error": "bad_request"})


class TestLookup:
    def test_succeeded(self, http: httpx.Client, gateway: PaymentSandbox) -> None:
        key = new_key()
        charge_id = charge(http, key, amount=1000).json()["id"]
        refund(http, new_key(), charge_id, 300)

        response = http.get("/v1/charges", params={"idempotency_key": key})

        assert response.status_code == 200
        assert response.json() == {
            "items": [
                {
                    "id": charge_id,
                    "idempotency_key": key,
                    "status": "succeeded",
                    "amount": 1000,
                    "currency": "EUR",
                    "refunded": 300,
                    "error": None,
                }
            ]
        }

    def test_failed(self, http: httpx.Client, gateway: PaymentSandbox) -> None:
        key = new_key()
        charge(http, key, card="tok_decline", amount=700)

        assert gateway.charges(key) == [
            {
                "id": None,
                "idempotency_key": key,
                "status": "failed",
                "amount": 700,
                "currency": "EUR",
                "refunded": 0,
                "error": "card_declined",
            }
        ]

    async def test_processing_while_in_flight(
        self, http: httpx.Client, gateway: PaymentSandbox
    ) -> None:
        key = new_key()

        async with httpx.AsyncClient(base_url=gateway.url, timeout=10.0) as client:
            pending = asyncio.ensure_future(
                client.post(
                    "/v1/charges",
                    json=charge_body("tok_slow_1000"),
                    headers={"Idempotency-Key": key},
                )
            )
            await in_flight(gateway, key)
            while_in_flight = gateway.charges(key)
            done = await pending

        assert while_in_flight == [
            {
                "id": None,
                "idempotency_key": key,
                "status": "processing",
                "amount": 1250,
                "currency": "EUR",
                "refunded": 0,
                "error": None,
            }
        ]
        [after] = gateway.charges(key)
        assert (after["status"], after["id"]) == ("succeeded", done.json()["id"])

    def test_absent_when_nothing_happened(
        self, http: httpx.Client, gateway: PaymentSandbox
    ) -> None:
        unavailable = new_key()
        assert charge(http, unavailable, card="tok_fail_1_then_approve").status_code == 503

        assert gateway.charges(unavailable) == []
        assert gateway.charges(new_key()) == []
        assert gateway.refunds(new_key()) == []

    def test_lists_all(self, http: httpx.Client, gateway: PaymentSandbox) -> None:
        gateway.reset()
        approved, declined, unavailable = new_key(), new_key(), new_key()
        charge_id = charge(http, approved, amount=500).json()["id"]
        charge(http, declined, card="tok_decline", amount=600)
        charge(http, unavailable, card="tok_fail_1_then_approve")

        listed = gateway.charges()

        assert [(c["idempotency_key"], c["status"]) for c in listed] == [
            (approved, "succeeded"),
            (declined, "failed"),
        ]
        assert listed[0]["id"] == charge_id

    def test_refunds(self, http: httpx.Client, gateway: PaymentSandbox) -> None:
        gateway.reset()
        charge_id = charge(http, new_key(), amount=1000).json()["id"]
        refunded, unknown = new_key(), new_key()
        refund_id = refund(http, refunded, charge_id, 250).json()["id"]
        refund(http, unknown, "ch_doesnotexist", 100)

        response = http.get("/v1/refunds")

        assert response.status_code == 200
        assert response.json() == {
            "items": [
                {
                    "id": refund_id,
                    "idempotency_key": refunded,
                    "status": "succeeded",
                    "charge_id": charge_id,
                    "amount": 250,
                    "error": None,
                },
                {
                    "id": None,
                    "idempotency_key": unknown,
                    "status": "failed",
                    "charge_id": "ch_doesnotexist",
                    "amount": 100,
                    "error": "no_such_charge",
                },
            ]
        }
        assert gateway.refunds(refunded) == response.json()["items"][:1]


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
        assert gateway.stats() == {
            "charges": {},
            "refunds": {},
            "last_request_ids": [],
            "faults_injected": {"before": 0, "after": 0},
        }
        assert gateway.charges() == []
        assert refund(http, new_key(), charge_id, 1).status_code == 404

    def test_healthz(self, http: httpx.Client) -> None:
        response = http.get("/healthz")

        assert (response.status_code, response.json()) == (200, {"status": "ok"})

    def test_unknown_path_answers_json(self, http: httpx.Client) -> None:
        response = http.get("/v1/nothing-here")

        assert (response.status_code, response.json()) == (404, {"error": "not_found"})
