from __future__ import annotations

import pytest
from pydantic import ValidationError

from tripbook.settings import Settings


class TestProductionSettings:
    def test_refuses_the_dev_jwt_secret(self) -> None:
        with pytest.raises(ValidationError, match="TRIPBOOK_JWT_SECRET must be set"):
            Settings(env="production")

    def test_refuses_debug(self) -> None:
        with pytest.raises(ValidationError, match="TRIPBOOK_DEBUG must be off"):
            Settings(env="production", jwt_secret="x" * 40, debug=True)

    def test_accepts_a_real_secret(self) -> None:
        settings = Settings(env="production", jwt_secret="x" * 40)

        assert settings.env == "production"

    def test_trusted_proxies_from_a_comma_list(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TRIPBOOK_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")

        assert [str(n) for n in Settings().trusted_proxies] == ["10.0.0.0/8", "127.0.0.1/32"]
