"""The ``tripbook`` console script: migrate, seed demo data, create users."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Annotated, cast

import asyncpg
import typer
from alembic import command
from alembic.config import Config
from pydantic import ValidationError
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import make_url

from tripbook.core.logging import configure_logging
from tripbook.core.security import Role
from tripbook.settings import get_settings
from tripbook.users.schemas import UserCreate

app = typer.Typer(help="tripbook operations", no_args_is_help=True)

SOURCE_ROOT = Path(__file__).resolve().parents[2]


def alembic_ini() -> Path:
    """alembic.ini in the working directory (the image's /app), else the source checkout."""
    for candidate in (Path.cwd() / "alembic.ini", SOURCE_ROOT / "alembic.ini"):
        if candidate.is_file():
            return candidate
    raise typer.BadParameter("alembic.ini not found: run from the directory that holds it")


async def ensure_database(database_url: str) -> bool:
    """Create the database ``database_url`` names unless it exists; True when created.

    So ``make run`` works on a fresh PostgreSQL. Where the role may not create databases
    (a managed server), the database is provisioned beforehand and this only looks.
    """
    url = make_url(database_url)
    name = url.database
    if not name:
        raise typer.BadParameter("TRIPBOOK_DATABASE_URL names no database")
    maintenance = url.set(drivername="postgresql", database="postgres")
    connection = await asyncpg.connect(maintenance.render_as_string(hide_password=False))
    try:
        if await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        # An identifier cannot be a parameter: quoted by SQLAlchemy's PostgreSQL preparer.
        preparer = postgresql.dialect().identifier_preparer  # type: ignore[no-untyped-call]
        quoted = preparer.quote_identifier(name)
        await connection.execute(f"CREATE DATABASE {quoted}")
        return True
    finally:
        await connection.close()


def alembic_config(database_url: str | None = None) -> Config:
    config = Config(str(alembic_ini()))
    config.attributes["database_url"] = database_url or get_settings().database_url
    return config


@app.command()
def migrate(
    revision: str = "head",
    create_database: Annotated[
        bool, typer.Option(help="create the database first when it does not exist")
    ] = True,
) -> None:
    """Upgrade the database schema (Alembic) to REVISION."""
    database_url = get_settings().database_url
    if create_database and asyncio.run(ensure_database(database_url)):
        typer.echo(f"database {make_url(database_url).database} created")
    command.upgrade(alembic_config(database_url), revision)
    typer.echo(f"database migrated to {revision}")


@app.command("seed-demo")
def seed_demo() -> None:
    """Create the demo catalogue and customer; safe to run again."""
    from tripbook.demo import seed

    summary = asyncio.run(seed(get_settings()))
    typer.echo(summary)


@app.command()
def reconcile(
    report: Annotated[
        bool,
        typer.Option(
            "--report",
            help="compare every charge and refund with the gateway's records instead; "
            "exit 1 on any mismatch",
        ),
    ] = False,
    reservation: Annotated[
        list[uuid.UUID] | None,
        typer.Option(help="with --report: only this reservation's money (repeatable)"),
    ] = None,
) -> None:
    """Settle open charges and refunds with the gateway now (what beat runs), or --report."""
    from tripbook.payments.commands import ledger_report, reconcile_once

    settings = get_settings()
    configure_logging(settings)
    if not report:
        done = asyncio.run(reconcile_once(settings))
        typer.echo(f"reconciled charges {done.charges or {}} refunds {done.refunds or {}}")
        return
    mismatches = asyncio.run(ledger_report(settings, reservation))
    for line in mismatches:
        typer.echo(line)
    if mismatches:
        typer.echo(f"{len(mismatches)} mismatches", err=True)
        raise typer.Exit(1)
    typer.echo("ledger balanced")


@app.command("create-user")
def create_user(
    email: Annotated[str, typer.Option(help="login email")],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True)],
    full_name: Annotated[str, typer.Option("--full-name")] = "Operator",
    role: Annotated[str, typer.Option(help="customer or ops")] = "customer",
) -> None:
    """Create a user, or update the password and role of an existing one."""
    from tripbook.users.commands import upsert_user

    if role not in ("customer", "ops"):
        raise typer.BadParameter("role must be customer or ops", param_hint="--role")
    try:  # the same rules as public registration: no ops account with a trivial password
        UserCreate(email=email, password=password, full_name=full_name)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise typer.BadParameter(problems) from exc
    created = asyncio.run(
        upsert_user(
            get_settings(),
            email=email,
            password=password,
            full_name=full_name,
            role=cast(Role, role),
        )
    )
    typer.echo(f"{'created' if created else 'updated'} {role} {email.lower()}")


if __name__ == "__main__":
    app()
