"""The ledger check: our charges and refunds against the gateway's own records.

The invariant (DESIGN §6), as ``tripbook reconcile --report`` and the tests check it:

- every charge the gateway applied is ours, recorded ``succeeded``, and belongs to a
  confirmed reservation or was refunded in full;
- every confirmed reservation (that costs money) has exactly one applied charge;
- no charge is refunded twice, and every refund we record as applied was applied there.

A charge or refund whose outcome is still open shows up too: the ledger balances only
once reconciliation is done.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict

from sqlalchemy.ext.asyncio import AsyncSession

from tripbook.payments import repository
from tripbook.payments.gateway import GatewayRecord, PaymentGateway
from tripbook.payments.repository import LedgerEntry
from tripbook.payments.state import OPEN, PaymentKind, PaymentStatus

APPLIED = "succeeded"  # the gateway's word for money that moved


def mismatches(
    entries: list[LedgerEntry],
    confirmed: list[uuid.UUID],
    gateway_charges: list[GatewayRecord],
    gateway_refunds: list[GatewayRecord],
    *,
    scoped: bool,
) -> list[str]:
    """Every way the two ledgers disagree, one line each; [] when they balance.

    ``scoped``: ``entries`` cover only some reservations, so gateway records that match
    none of them belong to others and are not reported as strangers.
    """
    problems: list[str] = []
    charges = {e.idempotency_key: e for e in entries if e.kind == PaymentKind.CHARGE}
    refunds = {e.idempotency_key: e for e in entries if e.kind == PaymentKind.REFUND}
    at_gateway = {record.idempotency_key: record for record in gateway_charges}
    refunds_at_gateway = {record.idempotency_key: record for record in gateway_refunds}
    refunded_by_reference: defaultdict[str, list[GatewayRecord]] = defaultdict(list)
    for record in gateway_refunds:
        if record.status == APPLIED and record.charge_reference:
            refunded_by_reference[record.charge_reference].append(record)

    for entry in [*charges.values(), *refunds.values()]:
        if PaymentStatus(entry.status) in OPEN:
            problems.append(f"{entry.kind} {entry.idempotency_key} is still {entry.status}")

    for key, record in at_gateway.items():
        ours = charges.get(key)
        if ours is None:
            if not scoped and record.status == APPLIED:
                problems.append(f"charge {key} applied at the gateway is unknown to us")
            continue
        applied = record.status == APPLIED
        if applied != (ours.status == PaymentStatus.SUCCEEDED):
            problems.append(f"charge {key} is {ours.status} here, {record.status} there")
        if not applied:
            continue
        applied_refunds = refunded_by_reference.get(record.reference or "", [])
        if len(applied_refunds) > 1 or record.refunded > record.amount:
            problems.append(f"charge {key} was refunded more than once")
        refunded = record.refunded >= record.amount
        if ours.reservation_status == "confirmed" and refunded:
            problems.append(f"charge {key} was refunded, yet {ours.reservation_id} is confirmed")
        if ours.reservation_status != "confirmed" and not refunded:
            problems.append(
                f"charge {key} was applied, {ours.reservation_id} is "
                f"{ours.reservation_status} and nothing was refunded"
            )

    for key, entry in charges.items():
        if entry.status == PaymentStatus.SUCCEEDED and key not in at_gateway:
            problems.append(f"charge {key} is succeeded here, unknown at the gateway")
    for key, entry in refunds.items():
        theirs = refunds_at_gateway.get(key)
        there = theirs.status if theirs else "unknown"
        if (entry.status == PaymentStatus.SUCCEEDED) != (there == APPLIED):
            problems.append(f"refund {key} is {entry.status} here, {there} there")

    def kept(key: str) -> bool:
        """Applied at the gateway and not refunded: money the reservation holds."""
        record = at_gateway.get(key)
        return record is not None and record.status == APPLIED and record.refunded < record.amount

    applied_charges = Counter(
        entry.reservation_id
        for key, entry in charges.items()
        if entry.status == PaymentStatus.SUCCEEDED and kept(key)
    )
    for reservation_id in confirmed:
        count = applied_charges.get(reservation_id, 0)
        if count != 1:
            problems.append(f"confirmed {reservation_id} has {count} applied charges")
    return problems


async def report(
    session: AsyncSession,
    gateway: PaymentGateway,
    *,
    reservation_ids: list[uuid.UUID] | None = None,
) -> list[str]:
    """Compare the database (or the given reservations' part of it) with the gateway."""
    entries = await repository.ledger_entries(session, reservation_ids=reservation_ids)
    confirmed = await repository.confirmed_reservations(session, reservation_ids=reservation_ids)
    return mismatches(
        entries,
        confirmed,
        await gateway.list_charges(),
        await gateway.list_refunds(),
        scoped=reservation_ids is not None,
    )
