"""Fixtures shared by the core tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.coverage_silent_server import SilentServer, silent_server


@pytest.fixture
def hanging() -> Iterator[SilentServer]:
    """A server that accepts connections and never answers: a dependency that hangs."""
    with silent_server() as server:
        yield server
