from __future__ import annotations

from sqlalchemy import BigInteger, CheckConstraint, Identity, String
from sqlalchemy.orm import Mapped, mapped_column

from tripbook.core.db import Base, TimestampMixin

ROLES = ("customer", "ops")


class User(TimestampMixin, Base):
    __tablename__ = "user_account"
    __table_args__ = (CheckConstraint(f"role IN {ROLES}", name="role_known"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-cased
    password_hash: Mapped[str] = mapped_column(String(255))
    full_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default="customer")
