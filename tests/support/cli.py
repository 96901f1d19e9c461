"""The ``tripbook`` console script, run as a process in the test world."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

from tests import environment

TRIPBOOK = str(environment.ROOT / ".venv" / "bin" / "tripbook")


async def tripbook(
    *args: str, env: Mapping[str, str] | None = None, timeout_s: float = 60
) -> tuple[int, str, str]:
    """Run the console script with the test environment, ``env`` on top; its exit code,
    stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        TRIPBOOK,
        *args,
        env={**os.environ, **environment.ENVIRONMENT, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=timeout_s)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()
