"""The money path through the API and the settlement services, without a worker: paying
again after a decline, lapsed holds, the cancellation policy, refunds for ops, and the
rules that keep a charge's state honest (only a definite answer is final)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.factories import Account, Factories
from tests.support.payments import hold, open_payment, pay, refund_as, settle_as
from tests.support.problems import assert_problem
from tripbook.core.db import unit_of_work
from tripbook.core.outbox import OutboxEvent
from tripbook.payments import settlement
from tripbook.payments.exceptions import InvalidPaymentState
from tripbook.payments.gateway import Approved, Declined, Misconfigured, RetryableFailure
from tripbook.payments.models import Payment
from tripbook.payments.state import PaymentKind, PaymentStatus, check_transition
from tripbook.reservations.models import Reservation
from tripbook.trips.models import Departure


@pytest.fixture
async def customer(factories: Factories) -> Account:
    return await factories.account()


async def read(client: httpx.AsyncClient, account: Account, reservation_id: str) -> str:
    response = await client.get(f"/v1/reservations/{reservation_id}", headers=account.headers)
    assert response.status_code == 200
    status: str = response.json()["status"]
    return status


async def set_reservation(
    sessionmaker: async_sessionmaker[AsyncSession], reservation_id: str, **values: Any
) -> None:
    async with unit_of_work(sessionmaker) as session:
        await session.execute(
            update(Reservation).where(Reservation.id == uuid.UUID(reservation_id)).values(**values)
        )


async def events(
    sessionmaker: async_sessionmaker[AsyncSession], task: str, **payload: str
) -> list[OutboxEvent]:
    async with sessionmaker() as session:
        query = select(OutboxEvent).where(OutboxEvent.task == task)
        for name, value in payload.items():
            query = query.where(OutboxEvent.payload[name].astext == value)
        return list(await session.scalars(query))


def an_hour_ago() -> datetime:
    return datetime.now(UTC) - timedelta(hours=1)


class TestPayAgainAfterDecline:
    async def test_takes_the_seats_back_with_a_new_charge(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        held = await hold(client, factories, customer, seats=2, capacity=5)
        assert (await pay(client, customer, held["id"], "tok_decline")).status_code == 202
        await settle_as(sessionmaker, held["id"], Declined("card_declined"))
        assert await factories.seats_available(held["departure_id"]) == 5
        assert await read(client, customer, held["id"]) == "payment_failed"

        again = await pay(client, customer, held["id"])

        assert (again.status_code, again.json()["status"]) == (202, "payment_pending")
        assert await factories.seats_available(held["departure_id"]) == 3
        retried = await open_payment(sessionmaker, held["id"])
        assert (retried.status, retried.attempts, retried.payment_token) == (
            "pending",
            0,
            "tok_approve",
        )
        assert retried.idempotency_key == f"charge-{retried.id}"
        assert len(await events(sessionmaker, "payments.settle", payment_id=str(retried.id))) == 1

    async def test_seats_gone_meanwhile(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        held = await hold(client, factories, customer, seats=2, capacity=2)
        await pay(client, customer, held["id"], "tok_decline")
        await settle_as(sessionmaker, held["id"], Declined("card_declined"))
        async with unit_of_work(sessionmaker) as session:  # someone else takes one seat
            await session.execute(
                update(Departure)
                .where(Departure.id == held["departure_id"])
                .values(seats_available=1)
            )

        again = await pay(client, customer, held["id"])

        problem = assert_problem(again, 409)
        assert problem["code"] == "SEATS_UNAVAILABLE"
        assert problem["context"]["available"] == 1
        assert await read(client, customer, held["id"]) == "payment_failed"
        assert await factories.seats_available(held["departure_id"]) == 1
        assert (await open_payment(sessionmaker, held["id"])).status == "failed"

    async def test_after_its_window_the_reservation_has_lapsed(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        held = await hold(client, factories, customer)
        await pay(client, customer, held["id"], "tok_decline")
        await settle_as(sessionmaker, held["id"], Declined("card_declined"))
        await set_reservation(sessionmaker, held["id"], expires_at=an_hour_ago())

        again = await pay(client, customer, held["id"])

        assert assert_problem(again, 409)["code"] == "HOLD_EXPIRED"
        assert await read(client, customer, held["id"]) == "expired"


class TestLapsedHold:
    async def test_reads_expired_before_the_sweep(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        held = await hold(client, factories, customer)
        await set_reservation(sessionmaker, held["id"], expires_at=an_hour_ago())

        listed = await client.get("/v1/reservations", headers=customer.headers)
        as_held = await client.get("/v1/reservations?status=held", headers=customer.headers)
        as_expired = await client.get("/v1/reservations?status=expired", headers=customer.headers)

        assert await read(client, customer, held["id"]) == "expired"
        [item] = [r for r in listed.json()["items"] if r["id"] == held["id"]]
        assert item["status"] == "expired"
        assert held["id"] not in [r["id"] for r in as_held.json()["items"]]
        assert [r["id"] for r in as_expired.json()["items"]] == [held["id"]]

    @pytest.mark.parametrize("swept", [False, True])
    async def test_paying_it_is_hold_expired(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
        swept: bool,
    ) -> None:
        held = await hold(client, factories, customer)
        status = "expired" if swept else "held"
        await set_reservation(sessionmaker, held["id"], expires_at=an_hour_ago(), status=status)

        response = await pay(client, customer, held["id"])

        assert assert_problem(response, 409)["code"] == "HOLD_EXPIRED"

    async def test_cancelling_it_is_refused(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        held = await hold(client, factories, customer)
        await set_reservation(sessionmaker, held["id"], expires_at=an_hour_ago())

        response = await client.post(
            f"/v1/reservations/{held['id']}/cancel", headers=customer.headers
        )

        problem = assert_problem(response, 409)
        assert problem["code"] == "INVALID_RESERVATION_STATE"
        assert problem["context"] == {"current": "expired", "target": "cancelled"}


async def confirmed(
    client: httpx.AsyncClient,
    factories: Factories,
    account: Account,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    departs_in: timedelta,
) -> dict[str, Any]:
    held = await hold(client, factories, account, departs_in=departs_in)
    assert (await pay(client, account, held["id"])).status_code == 202
    assert await settle_as(sessionmaker, held["id"], Approved("ch_test")) == "confirmed"
    return held


class TestCancellationPolicy:
    async def test_before_the_deadline_refunds_in_full(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        held = await confirmed(
            client, factories, customer, sessionmaker, departs_in=timedelta(hours=25)
        )

        response = await client.post(
            f"/v1/reservations/{held['id']}/cancel", headers=customer.headers
        )

        assert (response.status_code, response.json()["status"]) == (200, "cancelled")
        charge = await open_payment(sessionmaker, held["id"])
        refund = await open_payment(sessionmaker, held["id"], kind="refund")
        assert (refund.status, refund.amount, refund.charge_id) == ("pending", 5000, charge.id)
        assert refund.idempotency_key == f"refund-{charge.id}"
        [event] = await events(sessionmaker, "payments.refund", refund_id=str(refund.id))
        assert event.request_id == response.headers["x-request-id"]

    async def test_after_the_deadline_is_closed_for_customers(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        held = await confirmed(
            client, factories, customer, sessionmaker, departs_in=timedelta(hours=23)
        )

        response = await client.post(
            f"/v1/reservations/{held['id']}/cancel", headers=customer.headers
        )

        problem = assert_problem(response, 409)
        assert problem["code"] == "CANCELLATION_CLOSED"
        assert problem["context"]["deadline_s"] == 86400
        assert await read(client, customer, held["id"]) == "confirmed"
        async with sessionmaker() as session:
            refunds = await session.scalars(
                select(Payment).where(
                    Payment.reservation_id == uuid.UUID(held["id"]), Payment.kind == "refund"
                )
            )
            assert list(refunds) == []

    async def test_ops_may_always_cancel_with_a_refund(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        held = await confirmed(
            client, factories, customer, sessionmaker, departs_in=timedelta(hours=1)
        )
        ops = await factories.account("ops")

        response = await client.post(f"/v1/reservations/{held['id']}/cancel", headers=ops.headers)

        assert (response.status_code, response.json()["status"]) == (200, "cancelled")
        assert (await open_payment(sessionmaker, held["id"], kind="refund")).status == "pending"

    async def test_an_unpaid_hold_can_be_let_go_late(
        self, client: httpx.AsyncClient, factories: Factories, customer: Account
    ) -> None:
        held = await hold(client, factories, customer, departs_in=timedelta(hours=1))

        response = await client.post(
            f"/v1/reservations/{held['id']}/cancel", headers=customer.headers
        )

        assert (response.status_code, response.json()["status"]) == (200, "cancelled")


class TestOpsRefunds:
    async def refused(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> Payment:
        held = await confirmed(
            client, factories, customer, sessionmaker, departs_in=timedelta(days=3)
        )
        await client.post(f"/v1/reservations/{held['id']}/cancel", headers=customer.headers)
        assert await refund_as(sessionmaker, held["id"], Declined("refund_declined")) == (
            "refund_failed"
        )
        return await open_payment(sessionmaker, held["id"], kind="refund")

    async def test_refused_refunds_are_listed_for_ops(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        refund = await self.refused(client, factories, customer, sessionmaker)
        ops = await factories.account("ops")

        response = await client.get(
            "/v1/ops/refunds", params={"status": "refund_failed", "limit": 100}, headers=ops.headers
        )

        assert response.status_code == 200
        items = response.json()["items"]
        assert {item["status"] for item in items} == {"refund_failed"}
        [mine] = [item for item in items if item["id"] == str(refund.id)]
        assert mine == {
            "id": str(refund.id),
            "reservation_id": str(refund.reservation_id),
            "charge_id": str(refund.charge_id),
            "status": "refund_failed",
            "amount": {"amount": 5000, "currency": "EUR"},
            "attempts": 1,
            "error": "refund_declined",
            "created_at": mine["created_at"],
            "updated_at": mine["updated_at"],
        }

    async def test_customers_may_not(self, client: httpx.AsyncClient, customer: Account) -> None:
        listed = await client.get("/v1/ops/refunds", headers=customer.headers)
        retried = await client.post(
            f"/v1/ops/refunds/{uuid.uuid4()}/retry", headers=customer.headers
        )

        assert assert_problem(listed, 403)["code"] == "PERMISSION_DENIED"
        assert assert_problem(retried, 403)["code"] == "PERMISSION_DENIED"

    async def test_retry_sends_it_again_under_a_new_key(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        refund = await self.refused(client, factories, customer, sessionmaker)
        ops = await factories.account("ops")

        response = await client.post(f"/v1/ops/refunds/{refund.id}/retry", headers=ops.headers)
        again = await client.post(f"/v1/ops/refunds/{refund.id}/retry", headers=ops.headers)

        assert (response.status_code, response.json()["status"]) == (202, "pending")
        retried = await open_payment(sessionmaker, str(refund.reservation_id), kind="refund")
        assert retried.id == refund.id
        assert retried.idempotency_key == f"refund-{refund.charge_id}-retry-1"
        assert len(await events(sessionmaker, "payments.refund", refund_id=str(refund.id))) == 2
        problem = assert_problem(again, 409)  # it is pending now, not refused
        assert problem["code"] == "INVALID_PAYMENT_STATE"

    async def test_unknown_refund(self, client: httpx.AsyncClient, factories: Factories) -> None:
        ops = await factories.account("ops")

        response = await client.post(f"/v1/ops/refunds/{uuid.uuid4()}/retry", headers=ops.headers)

        assert assert_problem(response, 404)["code"] == "REFUND_NOT_FOUND"


class TestOnlyADefiniteAnswerIsFinal:
    @pytest.mark.parametrize(
        "answer",
        [
            RetryableFailure("timeout: ReadTimeout"),
            RetryableFailure("idempotency_key_in_use"),
            Misconfigured("http_401: bad_api_key"),
        ],
    )
    async def test_no_answer_leaves_it_unknown(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
        answer: RetryableFailure | Misconfigured,
    ) -> None:
        held = await hold(client, factories, customer)
        await pay(client, customer, held["id"])

        assert await settle_as(sessionmaker, held["id"], answer) == "retry"

        charge = await open_payment(sessionmaker, held["id"])
        assert (charge.status, charge.attempts, charge.error) == ("unknown", 1, answer.reason)
        assert charge.payment_token == "tok_approve"  # still needed for the next attempt
        assert await read(client, customer, held["id"]) == "payment_pending"
        assert await factories.seats_available(held["departure_id"]) == 3

    @pytest.mark.parametrize(
        ("answer", "status"), [(Approved("ch_x"), "succeeded"), (Declined("x"), "failed")]
    )
    async def test_a_final_charge_forgets_the_card_token(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
        answer: Approved | Declined,
        status: str,
    ) -> None:
        held = await hold(client, factories, customer)
        await pay(client, customer, held["id"])

        await settle_as(sessionmaker, held["id"], answer)

        charge = await open_payment(sessionmaker, held["id"])
        assert (charge.status, charge.payment_token) == (status, None)

    async def test_approved_after_cancellation_is_refunded(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        held = await hold(client, factories, customer)
        await pay(client, customer, held["id"])
        charge = await open_payment(sessionmaker, held["id"])
        async with unit_of_work(sessionmaker) as session:  # the worker sent it...
            start = await settlement.start_charge(session, payment_id=charge.id, request_id=None)
        assert start.attempt is not None
        cancelled = await client.post(  # ...and the customer cancelled meanwhile
            f"/v1/reservations/{held['id']}/cancel", headers=customer.headers
        )
        assert cancelled.status_code == 200
        async with unit_of_work(sessionmaker) as session:
            outcome = await settlement.apply_charge(
                session,
                payment_id=charge.id,
                result=Approved("ch_late"),
                retry_window=timedelta(minutes=10),
                request_id=None,
            )

        assert outcome.settlement == "refunding"
        refund = await open_payment(sessionmaker, held["id"], kind="refund")
        assert (refund.status, refund.charge_id, refund.amount) == ("pending", charge.id, 5000)
        assert len(await events(sessionmaker, "payments.refund", refund_id=str(refund.id))) == 1

    async def test_never_sent_to_a_closed_reservation_takes_no_money(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        held = await hold(client, factories, customer)
        await pay(client, customer, held["id"])
        await client.post(f"/v1/reservations/{held['id']}/cancel", headers=customer.headers)
        charge = await open_payment(sessionmaker, held["id"])

        async with unit_of_work(sessionmaker) as session:
            start = await settlement.start_charge(session, payment_id=charge.id, request_id=None)

        assert start.attempt is None
        charge = await open_payment(sessionmaker, held["id"])
        assert (charge.status, charge.attempts, charge.payment_token) == ("failed", 0, None)
        assert charge.error == "reservation cancelled before the charge was attempted"

    async def test_never_sent_past_the_payment_window_expires_the_reservation(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        held = await hold(client, factories, customer)
        await pay(client, customer, held["id"])
        await set_reservation(sessionmaker, held["id"], expires_at=an_hour_ago())
        charge = await open_payment(sessionmaker, held["id"])

        async with unit_of_work(sessionmaker) as session:
            start = await settlement.start_charge(session, payment_id=charge.id, request_id=None)

        assert start.attempt is None
        assert start.released is not None
        assert await read(client, customer, held["id"]) == "expired"
        assert await factories.seats_available(held["departure_id"]) == 5
        assert (await open_payment(sessionmaker, held["id"])).status == "failed"

    async def test_sent_and_unanswered_past_the_window_keeps_waiting(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        customer: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        """The money may have been taken: the seats stay held until the gateway answers."""
        held = await hold(client, factories, customer)
        await pay(client, customer, held["id"])
        await settle_as(sessionmaker, held["id"], RetryableFailure("timeout: ReadTimeout"))
        await set_reservation(sessionmaker, held["id"], expires_at=an_hour_ago())

        assert await settle_as(sessionmaker, held["id"], Approved("ch_late")) == "confirmed"

        assert await read(client, customer, held["id"]) == "confirmed"
        assert await factories.seats_available(held["departure_id"]) == 3


class TestPaymentStates:
    @pytest.mark.parametrize(
        ("kind", "current", "target"),
        [
            ("charge", "pending", PaymentStatus.SUCCEEDED),  # "unknown" cannot be skipped
            ("charge", "failed", PaymentStatus.UNKNOWN),
            ("charge", "succeeded", PaymentStatus.FAILED),
            ("refund", "pending", PaymentStatus.SUCCEEDED),
            ("refund", "succeeded", PaymentStatus.PENDING),
            ("refund", "unknown", PaymentStatus.FAILED),  # a refund's "no" is refund_failed
        ],
    )
    def test_refused(self, kind: str, current: str, target: PaymentStatus) -> None:
        with pytest.raises(InvalidPaymentState):
            check_transition(kind, current, target)

    def test_a_refused_refund_may_be_sent_again(self) -> None:
        assert (
            check_transition(PaymentKind.REFUND, "refund_failed", PaymentStatus.PENDING)
            is PaymentStatus.PENDING
        )
