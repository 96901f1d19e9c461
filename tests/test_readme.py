"""The README documents what the code does: every setting, every Makefile target it names."""

from __future__ import annotations

import re

from tests import environment
from tripbook.settings import Settings

README = (environment.ROOT / "README.md").read_text()
MAKEFILE = (environment.ROOT / "Makefile").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    missing = [
        f"TRIPBOOK_{name.upper()}"
        for name in Settings.model_fields
        if f"`TRIPBOOK_{name.upper()}`" not in README
    ]

    assert missing == []


def test_every_make_target_named_exists() -> None:
    named = set(re.findall(r"`make ([a-z0-9-]+)`", README))
    defined = set(re.findall(r"^([a-z0-9-]+):", MAKEFILE, re.MULTILINE))

    assert named
    assert named - defined == set()


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in README
    assert (environment.ROOT / ".ci" / "run").read_text().strip().endswith("make test")
