from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, field_validator

from tripbook.core.text import NO_CONTROL_PATTERN, FullName


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: EmailStr = Field(max_length=320, examples=["ana@example.com"])
    # Never stripped: the login form sends the password exactly as typed.
    password: Annotated[str, StringConstraints(strip_whitespace=False)] = Field(
        min_length=10,
        max_length=128,
        description="Not only letters, not only digits, and at least 5 different characters",
        examples=["s3cret-passw0rd"],
    )
    full_name: FullName = Field(examples=["Ana Silva"])

    @field_validator("password")
    @classmethod
    def _not_trivial(cls, value: str) -> str:
        if value.isdigit() or value.isalpha() or len(set(value)) < 5:
            raise ValueError("password must mix letters with digits or symbols")
        return value


class LoginForm(BaseModel):
    """The OAuth2 password grant (RFC 6749 §4.3) as a form carries it: no field is ever null,
    and an empty one counts as missing. Other fields (scope, client_id) are ignored."""

    grant_type: str = Field(default="password", pattern=r"^password$")
    username: str = Field(
        min_length=1, max_length=320, pattern=NO_CONTROL_PATTERN, examples=["ana@example.com"]
    )
    password: str = Field(min_length=1, json_schema_extra={"format": "password"})


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    email: str
    full_name: str
    role: Literal["customer", "ops"]
    created_at: datetime


class AccessToken(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 scheme name
    expires_in: int
