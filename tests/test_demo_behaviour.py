"""``tripbook seed-demo``, run as the console script against the test database: the demo
catalogue and the two demo accounts the README names, made once however often it runs."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.support.api import login
from tests.support.cli import tripbook
from tripbook.demo import CATALOGUE, DAYS_AHEAD, DEMO_CUSTOMER, DEMO_OPS
from tripbook.trips.models import Departure, Trip
from tripbook.users.models import User

SUMMARY = re.compile(r"demo data ready: (\d+) trips and (\d+) departures added; ")
# What the README promises: "Demo accounts … demo@tripbook.local / demo-password-1
# (customer), ops@tripbook.local / ops-password-1 (ops)".
README_ACCOUNTS = [
    ("demo@tripbook.local", "demo-password-1", "customer"),
    ("ops@tripbook.local", "ops-password-1", "ops"),
]


async def demo_state(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> tuple[dict[str, list[int]], dict[str, list[str]]]:
    """Per demo trip title, the upcoming departures of each trip of that title; per demo
    email, the role of each account with it."""
    titles = [title for _, _, title, _, _ in CATALOGUE]
    emails = [DEMO_CUSTOMER[0], DEMO_OPS[0]]
    async with sessionmaker() as session:
        trips = await session.execute(
            select(Trip.title, func.count(Departure.id))
            .outerjoin(
                Departure,
                (Departure.trip_id == Trip.id) & (Departure.departs_at > datetime.now(UTC)),
            )
            .where(Trip.title.in_(titles))
            .group_by(Trip.id)
        )
        users = await session.execute(select(User.email, User.role).where(User.email.in_(emails)))
    departures: dict[str, list[int]] = {title: [] for title in titles}
    for title, count in trips:
        departures[title].append(count)
    roles: dict[str, list[str]] = {email: [] for email in emails}
    for email, role in users:
        roles[email].append(role)
    return departures, roles


async def test_seed_demo_twice_makes_the_demo_world_once(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    first = await tripbook("seed-demo")
    after_first = await demo_state(sessionmaker)
    second = await tripbook("seed-demo")
    after_second = await demo_state(sessionmaker)

    assert first[0] == 0, first[2]
    assert second[0] == 0, second[2]
    added_first, added_second = SUMMARY.match(first[1]), SUMMARY.match(second[1])
    assert added_first is not None, first[1]
    assert added_second is not None, second[1]
    assert added_first.groups() == (str(len(CATALOGUE)), str(len(CATALOGUE) * DAYS_AHEAD))
    assert added_second.groups() == ("0", "0")
    assert after_second == after_first
    departures_per_trip, roles = after_second
    assert departures_per_trip == {title: [DAYS_AHEAD] for _, _, title, _, _ in CATALOGUE}
    assert roles == {email: [role] for email, _, role in README_ACCOUNTS}
    for email, password, role in README_ACCOUNTS:
        token = await login(client, email, password)
        assert token.status_code == 200, token.text
        me = await client.get(
            "/v1/users/me", headers={"Authorization": f"Bearer {token.json()['access_token']}"}
        )
        assert (me.json()["email"], me.json()["role"]) == (email, role)


async def test_seed_demo_refuses_production(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """``seed-demo`` refuses to run in production, as the README says: nothing is added."""
    before = await demo_state(sessionmaker)
    env = {"TRIPBOOK_ENV": "production", "TRIPBOOK_JWT_SECRET": "p" * 40}
    code, stdout, stderr = await tripbook("seed-demo", env=env)

    assert code != 0
    assert "refusing to seed demo data into a production environment" in stderr
    assert stdout == ""
    assert await demo_state(sessionmaker) == before
