"""The async engine, the session factory and the request's unit of work."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

import asyncpg
from sqlalchemy import DateTime, MetaData, TextClause, event, func
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import PoolProxiedConnection

from tripbook.core.logging import get_logger
from tripbook.settings import Settings

log = get_logger(__name__)
MAX_BIGINT = 2**63 - 1

# Stable constraint names, so Alembic autogenerate and hand-written revisions agree.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: DateTime(timezone=True)}


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


def engine_options(settings: Settings) -> dict[str, Any]:
    return {
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout_s,
        # Replaced by ``_refuse_closed_connection``: asyncpg's pre-ping outside a
        # transaction is BEGIN, ";" and ROLLBACK, three round trips per checkout, which
        # was most of a seat hold's database time.
        "pool_pre_ping": False,
        "pool_recycle": 1800,
        # A statement's parameters (a password hash, a name, a token) never reach an error
        # message, and so never a log line.
        "hide_parameters": True,
        "connect_args": {
            "timeout": settings.db_connect_timeout_s,
            "server_settings": {
                "application_name": "tripbook",
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "lock_timeout": str(settings.db_lock_timeout_ms),
                # A crashed client must never leave a row lock behind.
                "idle_in_transaction_session_timeout": "30000",
            },
        },
    }


def create_engine(settings: Settings, **overrides: Any) -> AsyncEngine:
    engine = create_async_engine(settings.database_url, **{**engine_options(settings), **overrides})
    event.listen(engine.sync_engine, "checkout", _refuse_closed_connection)
    return engine


def _refuse_closed_connection(_: Any, __: Any, proxy: PoolProxiedConnection) -> None:
    """A liveness check at checkout that costs no round trip.

    A connection PostgreSQL has closed (restart, failover, ``pg_terminate_backend``,
    ``idle_session_timeout``) is known to asyncpg as closed once the event loop has seen
    the socket go; the pool then discards it and checks out another (SQLAlchemy's
    documented custom pessimistic check). A connection that died silently, with no FIN,
    fails its first statement instead: that request gets 503 + Retry-After, and
    SQLAlchemy invalidates every older connection in the pool.
    """
    if proxy.driver_connection is None or proxy.driver_connection.is_closed():
        raise DisconnectionError("the server closed this connection")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


AfterCommit = Callable[[], Awaitable[None]]


def after_commit(session: AsyncSession, callback: AfterCommit) -> None:
    """Run ``callback`` once the unit of work has committed (cache invalidation, relays).

    Its failure is logged, never raised: the transaction already stands.
    """
    session.info.setdefault("after_commit", []).append(callback)


@asynccontextmanager
async def unit_of_work(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """Yield a session; commit when the caller finishes cleanly, roll back otherwise."""
    async with sessionmaker() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise
        callbacks: list[AfterCommit] = session.info.pop("after_commit", [])
        for callback in callbacks:
            try:
                await callback()
            except Exception:
                log.exception("after_commit_failed", callback=getattr(callback, "__name__", "?"))


@asynccontextmanager
async def autocommit(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A pooled connection on which each statement is its own transaction.

    For work that is one statement: it saves the BEGIN and COMMIT round trips, and any
    row lock the statement takes is released as soon as PostgreSQL has run it.
    """
    async with engine.connect() as connection:
        yield await connection.execution_options(isolation_level="AUTOCOMMIT")


def in_autocommit(connection: AsyncConnection) -> bool:
    """Whether each statement on ``connection`` is its own transaction (``autocommit``)."""
    sync = connection.sync_connection
    options = sync.get_execution_options() if sync is not None else {}
    return bool(options.get("isolation_level") == "AUTOCOMMIT")


@dataclass(frozen=True, slots=True)
class DriverStatement:
    """A ``text()`` statement compiled once for asyncpg: ``$n`` placeholders, in order."""

    sql: str
    parameters: tuple[str, ...]

    @classmethod
    def compile(cls, statement: TextClause) -> DriverStatement:
        compiled = statement.compile(dialect=asyncpg_dialect())  # type: ignore[no-untyped-call]
        return cls(str(compiled), tuple(compiled.positiontup or ()))


async def fetch_one_on_driver(
    connection: AsyncConnection, statement: DriverStatement, params: Mapping[str, Any]
) -> asyncpg.Record | None:
    """Run ``statement`` on the asyncpg connection under ``connection``; its first row.

    For the hottest statement only (a seat hold): SQLAlchemy's execution path costs
    more CPU than the statement itself (656 against 378 µs per hold, measured in one
    process). Failures are handled as SQLAlchemy handles them:

    - an error PostgreSQL reported leaves the connection usable, and is raised as a
      ``DBAPIError`` around the driver's, so ``is_transient`` and the error map treat
      both paths alike;
    - anything else (a lost socket, a cancelled await) may leave the protocol mid-way, so
      the connection is invalidated, never pooled again, and the error raised as before.
    """
    driver = (await connection.get_raw_connection()).driver_connection
    assert driver is not None
    try:
        record: asyncpg.Record | None = await driver.fetchrow(
            statement.sql, *(params[name] for name in statement.parameters)
        )
    except BaseException as exc:
        reported = isinstance(exc, asyncpg.PostgresError) and not isinstance(
            exc, asyncpg.PostgresConnectionError
        )
        if not reported:
            await connection.invalidate()
        if not isinstance(exc, Exception):
            raise  # cancellation stays cancellation
        raise DBAPIError(
            statement.sql,
            None,
            exc,
            hide_parameters=True,
            connection_invalidated=driver.is_closed(),
        ) from exc
    return record


# SQLSTATEs that mean "try again shortly", not "this request is wrong": lock and statement
# timeouts, serialization failures and deadlocks, an administrator ending the session, too
# many connections, and the whole connection-exception class (08xxx).
TRANSIENT_SQLSTATES = frozenset({"55P03", "57014", "40001", "40P01", "57P01", "57P02", "53300"})


def is_transient(exc: BaseException) -> bool:
    """True for database failures a client should simply retry (answered with 503)."""
    if isinstance(exc, SQLAlchemyTimeoutError):  # the pool had no connection in time
        return True
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is None:
        # Connection refused or reset before PostgreSQL said anything: the driver's error
        # itself (``fetch_one_on_driver``) or the cause of SQLAlchemy's adapted one.
        return isinstance(exc.orig, OSError) or isinstance(
            exc.orig.__cause__ if exc.orig else None, OSError | ConnectionError
        )
    return sqlstate in TRANSIENT_SQLSTATES or str(sqlstate).startswith("08")
