"""POST /v1/reservations/{id}/payment through the HTTP API in-process (no worker here)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests import environment
from tests.support.apps import serving
from tests.support.factories import Account, Factories
from tests.support.payments import hold, pay_url, settle_as
from tests.support.problems import assert_problem
from tests.support.workers import eventually
from tripbook.core.db import unit_of_work
from tripbook.core.outbox import OutboxEvent
from tripbook.payments.gateway import Declined
from tripbook.payments.models import Payment
from tripbook.reservations.models import Reservation
from tripbook.settings import Settings


@pytest.fixture
async def customer(factories: Factories) -> Account:
    return await factories.account()


async def payments(
    sessionmaker: async_sessionmaker[AsyncSession], reservation_id: str
) -> list[Payment]:
    async with sessionmaker() as session:
        result = await session.scalars(
            select(Payment).where(Payment.reservation_id == uuid.UUID(reservation_id))
        )
        return list(result)


class TestPay:
    async def test_accepted_for_settlement(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
        settings: Settings,
    ) -> None:
        held = await hold(client, factories, customer)

        response = await client.post(
            pay_url(held["id"]), json={"payment_token": "tok_approve"}, headers=customer.headers
        )

        assert response.status_code == 202
        body = response.json()
        assert (body["id"], body["status"]) == (held["id"], "payment_pending")
        expires_at = datetime.fromisoformat(body["expires_at"])
        window = timedelta(seconds=settings.payment_window_s)
        assert abs(expires_at - (datetime.now(UTC) + window)) < timedelta(seconds=30)
        [payment] = await payments(sessionmaker, held["id"])
        assert (payment.kind, payment.status, payment.amount, payment.currency) == (
            "charge",
            "pending",
            5000,
            "EUR",
        )
        assert (payment.idempotency_key, payment.attempts) == (f"charge-{payment.id}", 0)

        async def published() -> OutboxEvent | None:
            async with sessionmaker() as session:
                [event] = await session.scalars(
                    select(OutboxEvent).where(
                        OutboxEvent.payload["payment_id"].astext == str(payment.id)
                    )
                )
            return event if event.published_at is not None else None

        # Published right after commit (by the relay's background loop, not before the
        # response), to the test run's own broker key space.
        event = await eventually(published, timeout_s=10, what="the settle event to publish")
        assert event.task == "payments.settle"
        assert event.request_id == response.headers["x-request-id"]

    async def test_anonymous(self, client: httpx.AsyncClient) -> None:
        response = await client.post(pay_url(str(uuid.uuid4())), json={"payment_token": "t"})

        assert_problem(response, 401)

    async def test_other_users_reservation(
        self, client: httpx.AsyncClient, factories: Factories, customer: Account
    ) -> None:
        held = await hold(client, factories, customer)
        stranger = await factories.account()

        response = await client.post(
            pay_url(held["id"]), json={"payment_token": "tok_approve"}, headers=stranger.headers
        )

        assert assert_problem(response, 404)["code"] == "RESERVATION_NOT_FOUND"

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"payment_token": ""},
            {"payment_token": "x" * 256},
            {"payment_token": "has spaces"},
            {"payment_token": "tok_approve", "amount": 1},
        ],
    )
    async def test_invalid_body(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        body: dict[str, Any],
    ) -> None:
        held = await hold(client, factories, customer)

        response = await client.post(pay_url(held["id"]), json=body, headers=customer.headers)

        assert assert_problem(response, 422)["code"] == "VALIDATION_ERROR"

    async def test_paying_twice_conflicts(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        held = await hold(client, factories, customer)
        body = {"payment_token": "tok_approve"}
        first = await client.post(pay_url(held["id"]), json=body, headers=customer.headers)

        second = await client.post(pay_url(held["id"]), json=body, headers=customer.headers)

        assert first.status_code == 202
        assert assert_problem(second, 409)["code"] == "INVALID_RESERVATION_STATE"
        assert len(await payments(sessionmaker, held["id"])) == 1

    async def test_expired_hold(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        held = await hold(client, factories, customer)
        async with unit_of_work(sessionmaker) as session:
            await session.execute(
                update(Reservation)
                .where(Reservation.id == uuid.UUID(held["id"]))
                .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )

        response = await client.post(
            pay_url(held["id"]), json={"payment_token": "tok_approve"}, headers=customer.headers
        )

        assert assert_problem(response, 409)["code"] == "HOLD_EXPIRED"
        assert await payments(sessionmaker, held["id"]) == []

    async def test_free_reservation_is_confirmed_at_once(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        held = await hold(client, factories, customer, price=0)

        response = await client.post(
            pay_url(held["id"]), json={"payment_token": "tok_approve"}, headers=customer.headers
        )

        assert response.status_code == 202
        assert response.json()["status"] == "confirmed"
        assert await payments(sessionmaker, held["id"]) == []


class TestPayRateLimited:
    async def test_shares_the_reservations_budget(
        self, settings: Settings, factories: Factories, customer: Account
    ) -> None:
        async with serving(
            settings,
            rate_limit_reservations="2/minute",
            redis_key_prefix=environment.own_key_prefix("pay-limit"),
        ) as served:
            held = await hold(served.client, factories, customer)
            body = {"payment_token": "tok_approve"}
            url, headers = pay_url(held["id"]), customer.headers
            paid = await served.client.post(url, json=body, headers=headers)
            again = await served.client.post(url, json=body, headers=headers)

        assert paid.status_code == 202
        problem = assert_problem(again, 429)
        assert problem["code"] == "RATE_LIMITED"
        assert int(again.headers["retry-after"]) >= 1


class TestPayIdempotently:
    async def test_replayed(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        held = await hold(client, factories, customer)
        headers = {**customer.headers, "Idempotency-Key": f"pay-{uuid.uuid4()}"}
        body = {"payment_token": "tok_approve"}

        first = await client.post(pay_url(held["id"]), json=body, headers=headers)
        again = await client.post(pay_url(held["id"]), json=body, headers=headers)

        assert (first.status_code, again.status_code) == (202, 202)
        assert again.json() == first.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert len(await payments(sessionmaker, held["id"])) == 1

    async def test_key_reused_for_another_body(
        self, client: httpx.AsyncClient, factories: Factories, customer: Account
    ) -> None:
        held = await hold(client, factories, customer)
        headers = {**customer.headers, "Idempotency-Key": f"pay-{uuid.uuid4()}"}
        await client.post(pay_url(held["id"]), json={"payment_token": "tok_a"}, headers=headers)

        response = await client.post(
            pay_url(held["id"]), json={"payment_token": "tok_b"}, headers=headers
        )

        assert assert_problem(response, 422)["code"] == "IDEMPOTENCY_KEY_REUSED"


async def set_charge(
    sessionmaker: async_sessionmaker[AsyncSession], reservation_id: str, **values: Any
) -> None:
    """Put the reservation's charge in a state a worker would leave it in."""
    async with unit_of_work(sessionmaker) as session:
        await session.execute(
            update(Payment)
            .where(Payment.reservation_id == uuid.UUID(reservation_id))
            .values(**values)
        )


class TestGetPayment:
    async def pay(self, client: httpx.AsyncClient, account: Account, reservation_id: str) -> None:
        response = await client.post(
            pay_url(reservation_id), json={"payment_token": "tok_approve"}, headers=account.headers
        )
        assert response.status_code == 202

    async def test_pending_once_paid(
        self, client: httpx.AsyncClient, factories: Factories, customer: Account
    ) -> None:
        held = await hold(client, factories, customer)
        await self.pay(client, customer, held["id"])

        response = await client.get(pay_url(held["id"]), headers=customer.headers)

        assert response.status_code == 200
        body = response.json()
        assert set(body) == {
            "status",
            "amount",
            "attempts",
            "last_error",
            "refunds",
            "created_at",
            "updated_at",
        }
        assert (body["status"], body["attempts"], body["last_error"]) == ("pending", 0, None)
        assert (body["amount"], body["refunds"]) == ({"amount": 5000, "currency": "EUR"}, [])
        updated_at = datetime.fromisoformat(body["updated_at"])
        assert abs(updated_at - datetime.now(UTC)) < timedelta(seconds=30)

    async def test_retrying_says_why_in_safe_words(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        held = await hold(client, factories, customer)
        await self.pay(client, customer, held["id"])
        await set_charge(
            sessionmaker, held["id"], status="unknown", attempts=3, error="timeout: ReadTimeout"
        )

        response = await client.get(pay_url(held["id"]), headers=customer.headers)

        body = response.json()
        assert (body["status"], body["attempts"]) == ("unknown", 3)
        assert body["last_error"] == "The payment provider did not answer in time. Retrying."

    @pytest.mark.parametrize(
        ("error", "shown"),
        [
            ("card_declined", "The card was declined."),
            ("processor_unavailable", "The payment provider is temporarily unavailable."),
            (
                "Traceback: POST https://gw.example/v1/charges?token=tok_secret failed",
                "The payment provider did not accept the payment.",
            ),
        ],
    )
    async def test_failed(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
        error: str,
        shown: str,
    ) -> None:
        held = await hold(client, factories, customer)
        await self.pay(client, customer, held["id"])
        await set_charge(sessionmaker, held["id"], status="failed", attempts=1, error=error)

        response = await client.get(pay_url(held["id"]), headers=customer.headers)

        body = response.json()
        assert (body["status"], body["last_error"]) == ("failed", shown)
        assert "tok_secret" not in response.text
        assert "https://" not in response.text

    async def test_latest_charge_after_paying_again(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        held = await hold(client, factories, customer)
        await self.pay(client, customer, held["id"])
        assert await settle_as(sessionmaker, held["id"], Declined("card_declined")) == "failed"
        await self.pay(client, customer, held["id"])  # another card

        response = await client.get(pay_url(held["id"]), headers=customer.headers)

        body = response.json()
        assert (body["status"], body["attempts"], body["last_error"]) == ("pending", 0, None)
        declined, retried = sorted(
            await payments(sessionmaker, held["id"]), key=lambda p: p.created_at
        )
        assert (declined.status, retried.status) == ("failed", "pending")
        assert declined.idempotency_key != retried.idempotency_key

    async def test_not_paid_yet(
        self, client: httpx.AsyncClient, factories: Factories, customer: Account
    ) -> None:
        held = await hold(client, factories, customer)

        response = await client.get(pay_url(held["id"]), headers=customer.headers)

        problem = assert_problem(response, 404)
        assert problem["code"] == "PAYMENT_NOT_FOUND"
        assert problem["context"] == {"reservation_id": held["id"]}

    async def test_anonymous(self, client: httpx.AsyncClient) -> None:
        response = await client.get(pay_url(str(uuid.uuid4())))

        assert_problem(response, 401)

    async def test_other_users_reservation(
        self, client: httpx.AsyncClient, factories: Factories, customer: Account
    ) -> None:
        held = await hold(client, factories, customer)
        await self.pay(client, customer, held["id"])
        stranger = await factories.account()

        response = await client.get(pay_url(held["id"]), headers=stranger.headers)

        assert assert_problem(response, 404)["code"] == "RESERVATION_NOT_FOUND"

    async def test_ops_reads_anyones(
        self, client: httpx.AsyncClient, factories: Factories, customer: Account
    ) -> None:
        held = await hold(client, factories, customer)
        await self.pay(client, customer, held["id"])
        ops = await factories.account("ops")

        response = await client.get(pay_url(held["id"]), headers=ops.headers)

        assert (response.status_code, response.json()["status"]) == (200, "pending")

    async def test_unknown_reservation(self, client: httpx.AsyncClient, customer: Account) -> None:
        response = await client.get(pay_url(str(uuid.uuid4())), headers=customer.headers)

        assert assert_problem(response, 404)["code"] == "RESERVATION_NOT_FOUND"

    async def test_malformed_id(self, client: httpx.AsyncClient, customer: Account) -> None:
        response = await client.get(pay_url("not-a-uuid"), headers=customer.headers)

        assert assert_problem(response, 422)["code"] == "VALIDATION_ERROR"
