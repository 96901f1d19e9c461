"""schemathesis against a real gunicorn, driven by the app's own OpenAPI schema.

Every operation, with an ops token (so the catalogue writes are reached too): no 5xx, every
status, content type and body conforms to the schema, and every error is problem+json
(``tests/fuzz_hooks.py``). Bounded by TRIPBOOK_FUZZ_EXAMPLES per operation; ``make fuzz``
runs a longer pass.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests import environment
from tests.support.factories import Factories
from tests.support.servers import run_gunicorn

pytestmark = pytest.mark.slow

EXAMPLES = os.environ.get("TRIPBOOK_FUZZ_EXAMPLES", "20")
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "problem_json",
]


async def test_every_operation_conforms_to_the_schema(log_dir: Path, factories: Factories) -> None:
    ops = await factories.account("ops")
    with run_gunicorn(log_dir, workers=2) as server:
        result = subprocess.run(
            [
                str(environment.ROOT / ".venv" / "bin" / "schemathesis"),
                "--no-color",
                "run",
                f"{server.url}/v1/openapi.json",
                "--header",
                f"Authorization: Bearer {ops.token}",
                "--checks",
                ",".join(CHECKS),
                "--max-examples",
                EXAMPLES,
                "--generation-deterministic",
                "--phases",
                "examples,coverage,fuzzing",
                "--request-timeout",
                "30",
            ],
            cwd=environment.ROOT,
            env={**os.environ, "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks"},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        server_log = server.log()

    summary = result.stdout[-6000:]
    assert result.returncode == 0, summary + result.stderr[-2000:]
    assert "unhandled_exception" not in server_log
