"""schemathesis against a real gunicorn, driven by the app's own OpenAPI schema.

The world is seeded first (tests/support/fuzz_seed.py): trips with departures, a customer's
reservations (held, confirmed, cancelled with a refund the provider refused), an ops account
and each listing's second page. The fuzzer uses those ids, cursors and credentials most of
the time (tests/support/fuzz_config.py). Ops-only operations run with the ops token, every
other one with the customer's.

Every operation: no 5xx; status, content type and body as the schema says; schema-violating
data refused; every error problem+json (tests/fuzz_hooks.py). And every operation reached:
any schemathesis warning (only 401/403, 404 or validation errors answered...) fails the
run, and each operation must have served a valid request. Bounded by TRIPBOOK_FUZZ_EXAMPLES
per operation; ``make fuzz`` runs a longer pass.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from tests import environment
from tests.support.factories import Factories
from tests.support.fuzz_config import CUSTOMER_TOKEN_ENV, OPS_TOKEN_ENV, write_config
from tests.support.fuzz_report import read_report
from tests.support.fuzz_seed import FuzzWorld, seed
from tests.support.servers import run_gunicorn

EXAMPLES = int(os.environ.get("TRIPBOOK_FUZZ_EXAMPLES", "20"))
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "problem_json",
]
# A run takes 0.3 to 0.5 s per example (all operations together) on two cores.
RUN_TIMEOUT_S = 60 + 2 * EXAMPLES

pytestmark = [pytest.mark.slow, pytest.mark.timeout(RUN_TIMEOUT_S + 60)]


def run_schemathesis(
    url: str, config: Path, world: FuzzWorld, reports: Path
) -> subprocess.CompletedProcess[str]:
    command = [
        str(environment.ROOT / ".venv" / "bin" / "schemathesis"),
        "--no-color",
        "--config-file",
        str(config),
        "run",
        f"{url}/v1/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(EXAMPLES),
        "--generation-deterministic",
        "--phases",
        "examples,coverage,fuzzing",
        "--request-timeout",
        "30",
        "--report",
        "json,ndjson",
        "--report-dir",
        str(reports),
    ]
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.fuzz_hooks",
        CUSTOMER_TOKEN_ENV: world.customer.token,
        OPS_TOKEN_ENV: world.ops.token,
    }
    return subprocess.run(
        command,
        cwd=environment.ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


async def test_every_operation_is_reached_and_conforms_to_the_schema(
    log_dir: Path, tmp_path: Path, factories: Factories, client: httpx.AsyncClient
) -> None:
    world = await seed(factories, client)
    config = write_config(tmp_path / "schemathesis.toml", world)
    reports = tmp_path / "reports"
    with run_gunicorn(log_dir, workers=2) as server:
        result = run_schemathesis(server.url, config, world, reports)
        server_log = server.log()

    report = read_report(reports)
    table = report.table()
    print(table)  # noqa: T201 - per operation: cases, valid requests served, statuses
    output = f"{result.stdout[-8000:]}{result.stderr[-2000:]}\n{table}"
    assert result.returncode == 0, output
    assert report.warnings == {}, output
    assert report.run["operations"]["tested"] == report.run["operations"]["total"], output
    assert report.unreached() == [], output
    assert "unhandled_exception" not in server_log
