from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sandboxes import PaymentSandbox, run_payment_sandbox

# How long the sandbox holds a `tok_timeout` charge before answering 504.
SANDBOX_TIMEOUT_DELAY_S = 2.0


@pytest.fixture(scope="package")
def payment_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PaymentSandbox]:
    log_dir: Path = tmp_path_factory.mktemp("payments")
    with run_payment_sandbox(log_dir, timeout_delay_s=SANDBOX_TIMEOUT_DELAY_S) as sandbox:
        yield sandbox
