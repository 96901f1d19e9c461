"""The customer's side of paying through the API, and a worker's settlement without the
worker: the service steps a task runs, with the gateway's answer given, so API tests can
reach every payment state through real code."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.factories import Account, Factories
from tripbook.core.db import unit_of_work
from tripbook.payments import refunds, settlement
from tripbook.payments.gateway import GatewayResult
from tripbook.payments.models import Payment
from tripbook.payments.refunds import RefundOutcome
from tripbook.payments.settlement import Settlement

RETRY_WINDOW = timedelta(minutes=10)


async def hold(
    client: httpx.AsyncClient,
    factories: Factories,
    account: Account,
    *,
    seats: int = 2,
    capacity: int = 5,
    price: int = 2500,
    departs_in: timedelta = timedelta(days=7),
) -> dict[str, Any]:
    """``seats`` held on a new departure of ``capacity`` seats; the API's answer."""
    departure = await factories.departure(seats=capacity, price=price, departs_in=departs_in)
    response = await client.post(
        "/v1/reservations",
        json={
            "departure_id": departure.id,
            "seats": seats,
            "passengers": [{"full_name": "A"}] * seats,
        },
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def pay_url(reservation_id: str) -> str:
    return f"/v1/reservations/{reservation_id}/payment"


async def pay(
    client: httpx.AsyncClient, account: Account, reservation_id: str, card: str = "tok_approve"
) -> httpx.Response:
    return await client.post(
        pay_url(reservation_id), json={"payment_token": card}, headers=account.headers
    )


async def open_payment(
    sessionmaker: async_sessionmaker[AsyncSession], reservation_id: str, kind: str = "charge"
) -> Payment:
    """The reservation's newest charge (or refund)."""
    async with sessionmaker() as session:
        payment = await session.scalar(
            select(Payment)
            .where(Payment.reservation_id == uuid.UUID(reservation_id), Payment.kind == kind)
            .order_by(Payment.created_at.desc())
            .limit(1)
        )
        assert payment is not None
        return payment


async def settle_as(
    sessionmaker: async_sessionmaker[AsyncSession], reservation_id: str, result: GatewayResult
) -> Settlement:
    """Start the reservation's newest charge and apply ``result`` as the gateway's answer."""
    charge = await open_payment(sessionmaker, reservation_id)
    async with unit_of_work(sessionmaker) as session:
        start = await settlement.start_charge(session, payment_id=charge.id, request_id=None)
    assert start.attempt is not None, "nothing to settle"
    async with unit_of_work(sessionmaker) as session:
        outcome = await settlement.apply_charge(
            session,
            payment_id=charge.id,
            result=result,
            retry_window=RETRY_WINDOW,
            request_id=None,
        )
    return outcome.settlement


async def refund_as(
    sessionmaker: async_sessionmaker[AsyncSession], reservation_id: str, result: GatewayResult
) -> RefundOutcome:
    """Start the reservation's newest refund and apply ``result`` as the gateway's answer."""
    refund = await open_payment(sessionmaker, reservation_id, kind="refund")
    async with unit_of_work(sessionmaker) as session:
        attempt = await refunds.start_refund(session, refund_id=refund.id)
    assert attempt is not None, "nothing to refund"
    async with unit_of_work(sessionmaker) as session:
        return await refunds.apply_refund(
            session, refund_id=refund.id, result=result, request_id=None
        )
