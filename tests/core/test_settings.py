from __future__ import annotations

import pytest
from pydantic import ValidationError

from tripbook.settings import DEV_JWT_SECRET, Settings

SECRET = "p" * 40
CHECKED = ("TRIPBOOK_JWT_SECRET", "TRIPBOOK_DEBUG", "TRIPBOOK_CORS_ALLOW_ORIGINS")


@pytest.fixture(autouse=True)
def unset_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what a test sets counts, whatever the shell running the suite exports."""
    for name in CHECKED:
        monkeypatch.delenv(name, raising=False)


class TestProductionSettings:
    """``TRIPBOOK_ENV=production`` refuses to start with what is only fit for development,
    each refusal naming the variable to fix."""

    @pytest.mark.parametrize(
        ("environment", "message"),
        [
            pytest.param(
                {},
                "TRIPBOOK_JWT_SECRET must be set in production",
                id="the development secret",
            ),
            pytest.param(
                {"TRIPBOOK_JWT_SECRET": "s" * 31},
                "TRIPBOOK_JWT_SECRET must be at least 32 characters",
                id="a secret of 31 characters",
            ),
            pytest.param(
                {"TRIPBOOK_JWT_SECRET": SECRET, "TRIPBOOK_DEBUG": "true"},
                "TRIPBOOK_DEBUG must be off in production",
                id="debug",
            ),
            pytest.param(
                {"TRIPBOOK_JWT_SECRET": SECRET, "TRIPBOOK_CORS_ALLOW_ORIGINS": "*"},
                "TRIPBOOK_CORS_ALLOW_ORIGINS must list origins in production",
                id="any CORS origin",
            ),
            pytest.param(
                {
                    "TRIPBOOK_JWT_SECRET": SECRET,
                    "TRIPBOOK_CORS_ALLOW_ORIGINS": "https://app.example, *",
                },
                "TRIPBOOK_CORS_ALLOW_ORIGINS must list origins in production",
                id="any CORS origin among others",
            ),
        ],
    )
    def test_refuses(
        self, monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], message: str
    ) -> None:
        for name, value in {**environment, "TRIPBOOK_ENV": "production"}.items():
            monkeypatch.setenv(name, value)

        with pytest.raises(ValidationError) as refused:
            Settings(_env_file=None)

        [error] = refused.value.errors()
        assert error["msg"] == f"Value error, {message}"

    def test_accepts_a_secret_of_32_characters_and_listed_origins(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TRIPBOOK_ENV", "production")
        monkeypatch.setenv("TRIPBOOK_JWT_SECRET", "s" * 32)
        monkeypatch.setenv("TRIPBOOK_CORS_ALLOW_ORIGINS", "https://app.example")

        settings = Settings(_env_file=None)

        assert (settings.env, settings.cors_allow_origins) == (
            "production",
            ["https://app.example"],
        )

    def test_development_takes_what_production_refuses(self) -> None:
        settings = Settings(_env_file=None, env="development", debug=True, cors_allow_origins=["*"])

        assert settings.jwt_secret.get_secret_value() == DEV_JWT_SECRET

    def test_trusted_proxies_from_a_comma_list(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TRIPBOOK_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")

        assert [str(n) for n in Settings().trusted_proxies] == ["10.0.0.0/8", "127.0.0.1/32"]
