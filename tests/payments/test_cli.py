"""``tripbook reconcile``, run as the console script against the test database and a real
payment sandbox: one reconciliation pass, and the ledger report with its exit code."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.cli import tripbook
from tests.support.factories import Factories
from tests.support.payments import hold, open_payment, pay, settle_as
from tests.support.sandboxes import PaymentSandbox
from tripbook.core.db import unit_of_work
from tripbook.payments.gateway import Approved, RetryableFailure
from tripbook.payments.models import Payment


async def reconcile(sandbox: PaymentSandbox, *args: str) -> tuple[int, str, str]:
    """``tripbook reconcile`` with ``args``, against ``sandbox``."""
    env = {
        "TRIPBOOK_PAYMENT_GATEWAY_URL": sandbox.url,
        "TRIPBOOK_PAYMENT_GATEWAY_TIMEOUT_S": "1",
        "TRIPBOOK_PAYMENT_RECONCILE_AFTER_S": "3",
    }
    return await tripbook("reconcile", *args, env=env)


async def paid_hold(client: httpx.AsyncClient, factories: Factories) -> str:
    account = await factories.account()
    held = await hold(client, factories, account, seats=1, capacity=2, price=1500)
    assert (await pay(client, account, held["id"])).status_code == 202
    reservation_id: str = held["id"]
    return reservation_id


class TestReconcile:
    async def test_a_pass_settles_an_unknown_charge_and_the_report_balances(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        sessionmaker: async_sessionmaker[AsyncSession],
        payment_sandbox: PaymentSandbox,
    ) -> None:
        reservation_id = await paid_hold(client, factories)
        # A worker sent it and never heard back; nobody touched it for a while since.
        await settle_as(sessionmaker, reservation_id, RetryableFailure("timeout: ReadTimeout"))
        charge = await open_payment(sessionmaker, reservation_id)
        async with unit_of_work(sessionmaker) as session:
            await session.execute(
                update(Payment)
                .where(Payment.id == charge.id)
                .values(updated_at=datetime.now(UTC) - timedelta(minutes=5))
            )

        passed = await reconcile(payment_sandbox)
        reported = await reconcile(payment_sandbox, "--report", "--reservation", reservation_id)

        assert passed[0] == 0, passed[2]
        # Other tests' open charges may be settled by the same pass: count at least ours.
        assert re.fullmatch(
            r"reconciled charges \{.*'confirmed': [1-9]\d*.*\} refunds .*",
            passed[1].splitlines()[-1],  # after the log lines of the pass
        )
        assert (await open_payment(sessionmaker, reservation_id)).status == "succeeded"
        stats = payment_sandbox.stats()["charges"][charge.idempotency_key]
        assert stats == {"applied": 1, "attempts": 1}
        assert (reported[0], reported[1].splitlines()[-1]) == (0, "ledger balanced")

    async def test_the_report_names_every_mismatch_and_fails(
        self,
        client: httpx.AsyncClient,
        factories: Factories,
        sessionmaker: async_sessionmaker[AsyncSession],
        payment_sandbox: PaymentSandbox,
    ) -> None:
        reservation_id = await paid_hold(client, factories)
        # Recorded as paid, though the gateway never saw the charge.
        await settle_as(sessionmaker, reservation_id, Approved(f"ch_{uuid.uuid4().hex}"))
        charge = await open_payment(sessionmaker, reservation_id)

        code, out, err = await reconcile(
            payment_sandbox, "--report", "--reservation", reservation_id
        )

        assert code == 1
        assert [line for line in out.splitlines() if not line.startswith("{")] == [
            f"charge {charge.idempotency_key} is succeeded here, unknown at the gateway",
            f"confirmed {reservation_id} has 0 applied charges",
        ]
        assert err == "2 mismatches\n"
