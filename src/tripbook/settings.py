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
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=5, ge=0, le=200)
    db_pool_timeout_s: float = Field(default=5.0, gt=0)
    db_statement_timeout_ms: int = Field(default=5000, ge=100)
    db_lock_timeout_ms: int = Field(default=2000, ge=10)
    db_connect_timeout_s: float = Field(default=5.0, gt=0)

    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_key_prefix: str = "tripbook:"
    redis_timeout_s: float = Field(default=0.5, gt=0)

    broker_url: str = "redis://127.0.0.1:6379/1"

    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    trusted_proxies: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(
        default_factory=list
    )
    readiness_timeout_s: float = Field(default=1.0, gt=0)
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
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    mail_from: str = "tripbook <no-reply@tripbook.local>"
    notify_webhook_url: str | None = None

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        # Accept "10.0.0.0/8,127.0.0.1" from the environment as well as a JSON list.
        if isinstance(value, str):
            return [ip_network(part.strip(), strict=False) for part in value.split(",") if part]
        return value

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> Settings:
        if self.env == "production":
            if self.jwt_secret.get_secret_value() == DEV_JWT_SECRET:
                raise ValueError("TRIPBOOK_JWT_SECRET must be set in production")
            if len(self.jwt_secret.get_secret_value()) < 32:
                raise ValueError("TRIPBOOK_JWT_SECRET must be at least 32 characters")
            if self.debug:
                raise ValueError("TRIPBOOK_DEBUG must be off in production")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
