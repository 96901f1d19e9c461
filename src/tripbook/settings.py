"""All configuration, read once from the environment (prefix ``TRIPBOOK_``)."""

from __future__ import annotations

from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_JWT_SECRET = "dev-only-insecure-secret-change-me-000000"  # noqa: S105 - refused in production


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TRIPBOOK_", env_file=".env", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    debug: bool = False

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/tripbook"
    # A fixed pool: an overflow connection is closed as soon as it is returned to a full
    # pool, so steady load above the pool size opened a connection per request (measured:
    # a quarter of the hold throughput). Past the pool, requests queue for a connection.
    db_pool_size: int = Field(default=15, ge=1, le=200)
    db_max_overflow: int = Field(default=0, ge=0, le=200)
    db_pool_timeout_s: float = Field(default=5.0, gt=0)
    db_statement_timeout_ms: int = Field(default=5000, ge=100)
    db_lock_timeout_ms: int = Field(default=2000, ge=10)
    db_connect_timeout_s: float = Field(default=5.0, gt=0)

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_key_prefix: str = "tripbook:"
    redis_timeout_s: float = Field(default=0.5, gt=0)

    broker_url: str = "redis://127.0.0.1:6379/1"
    # Above the longest countdown or eta a task is ever given, or Redis redelivers it early.
    broker_visibility_timeout_s: int = Field(default=3600, ge=1)
    # How often a worker looks for messages a dead worker took and never acknowledged.
    broker_restore_interval_s: float = Field(default=10.0, gt=0)
    # The relay publishes from the request path: a broker outage costs this, never a hang.
    relay_publish_timeout_s: float = Field(default=0.5, gt=0)
    # The API relay waits this long after an event is committed, so that one publish and
    # one UPDATE carry the events of every request committed meanwhile; 0 sends at once.
    relay_linger_s: float = Field(default=0.02, ge=0, le=1)

    # A serving process freezes the loaded app out of the garbage collector and runs a young
    # collection every this many allocations (Python: 700); 0 keeps Python's defaults.
    gc_gen0_threshold: int = Field(default=50_000, ge=0, le=10_000_000)

    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    trusted_proxies: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(
        default_factory=list
    )
    # Browser origins allowed to call the API (comma-separated); empty means no CORS at all.
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    readiness_timeout_s: float = Field(default=1.0, gt=0)
    # After SIGTERM, keep serving (with /readyz at 503) this long before draining, so load
    # balancers stop sending traffic first. 0 when a preStop hook already does that.
    shutdown_delay_s: float = Field(default=0.0, ge=0, le=60)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)

    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_ttl_s: int = Field(default=3600, ge=60)

    hold_ttl_s: int = Field(default=600, ge=10)
    max_seats_per_reservation: int = Field(default=9, ge=1, le=100)
    trip_cache_ttl_s: int = Field(default=5, ge=0)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60)

    rate_limit_enabled: bool = True
    rate_limit_default: str = "600/minute"
    rate_limit_auth: str = "20/minute"
    rate_limit_reservations: str = "60/minute"

    payment_gateway_url: str = "http://127.0.0.1:8090"
    payment_gateway_timeout_s: float = Field(default=5.0, gt=0)
    # Time a reservation waits in payment_pending for its settlement before it expires.
    payment_window_s: int = Field(default=900, ge=60)
    payment_max_retries: int = Field(default=6, ge=0, le=50)
    # Reconciliation asks the gateway about every charge and refund whose outcome is still
    # open (pending, unknown) and that nothing touched for this long, every interval.
    payment_reconcile_interval_s: float = Field(default=60.0, gt=0)
    payment_reconcile_after_s: float = Field(default=600.0, gt=0)
    payment_reconcile_batch: int = Field(default=50, ge=1, le=1000)
    # Customers may cancel a confirmed reservation (full refund) until this long before
    # departure; ops may always cancel.
    cancellation_deadline_s: int = Field(default=24 * 3600, ge=0)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_timeout_s: float = Field(default=10.0, gt=0)
    smtp_starttls: bool = False
    # PEM certificates to verify the SMTP server with (none: the system's trust store).
    smtp_ca_file: str | None = None
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    mail_from: str = "tripbook <no-reply@tripbook.local>"
    email_max_retries: int = Field(default=8, ge=0, le=50)
    notify_webhook_url: str | None = None
    notify_webhook_timeout_s: float = Field(default=1.0, gt=0)

    # Retries wait base * 2**n seconds (capped), half of it jittered.
    task_retry_backoff_s: float = Field(default=2.0, gt=0)
    task_retry_backoff_max_s: float = Field(default=300.0, gt=0)
    task_soft_time_limit_s: int = Field(default=60, ge=1)
    task_time_limit_s: int = Field(default=90, ge=1)
    hold_expiry_interval_s: float = Field(default=15.0, gt=0)
    outbox_sweep_interval_s: float = Field(default=5.0, gt=0)
    # The sweep leaves younger rows to the after-commit relay that is publishing them.
    outbox_sweep_grace_s: float = Field(default=5.0, ge=0)
    outbox_sweep_batch: int = Field(default=200, ge=1, le=10_000)
    # An event published this long ago that no consumer recorded as processed is published
    # again (the broker may have lost it); after this many deliveries it is left, and logged.
    outbox_redeliver_after_s: float = Field(default=900.0, gt=0)
    outbox_max_deliveries: int = Field(default=10, ge=1, le=1000)
    idempotency_purge_interval_s: float = Field(default=3600.0, gt=0)
    # With PROMETHEUS_MULTIPROC_DIR set, the worker's main process serves /metrics here.
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        # Accept "10.0.0.0/8,127.0.0.1" from the environment as well as a JSON list.
        if isinstance(value, str):
            return [ip_network(part.strip(), strict=False) for part in value.split(",") if part]
        return value

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        # Accept "https://a.example,https://b.example" from the environment too.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _check_task_timing(self) -> Settings:
        if self.task_soft_time_limit_s >= self.task_time_limit_s:
            raise ValueError("TRIPBOOK_TASK_SOFT_TIME_LIMIT_S must be below the hard limit")
        # A message waiting out its countdown longer than this would be delivered twice.
        if self.broker_visibility_timeout_s <= self.task_retry_backoff_max_s:
            raise ValueError(
                "TRIPBOOK_BROKER_VISIBILITY_TIMEOUT_S must exceed the longest retry countdown"
            )
        # Reconciliation reads "the gateway has no record of this key" as "never sent",
        # which holds only once no request of ours can still be on its way there.
        if self.payment_reconcile_after_s <= 2 * self.payment_gateway_timeout_s:
            raise ValueError(
                "TRIPBOOK_PAYMENT_RECONCILE_AFTER_S must exceed twice the gateway timeout"
            )
        return self

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> Settings:
        if self.env == "production":
            if self.jwt_secret.get_secret_value() == DEV_JWT_SECRET:
                raise ValueError("TRIPBOOK_JWT_SECRET must be set in production")
            if len(self.jwt_secret.get_secret_value()) < 32:
                raise ValueError("TRIPBOOK_JWT_SECRET must be at least 32 characters")
            if self.debug:
                raise ValueError("TRIPBOOK_DEBUG must be off in production")
            if "*" in self.cors_allow_origins:
                raise ValueError("TRIPBOOK_CORS_ALLOW_ORIGINS must list origins in production")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
