"""Each serving process freezes the loaded app out of the collector and collects less often.

The collector is process-wide, so the function runs in a child Python, never in the test
process; the gunicorn test checks that every real worker does it once its app is loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import environment
from tests.support.servers import run_gunicorn


def in_child_python(body: str) -> dict[str, Any]:
    """Run ``body`` in a fresh interpreter; it leaves a dict in ``result``, printed as JSON."""
    program = "import gc, json, weakref\n" + body + "\nprint(json.dumps(result))\n"
    completed = subprocess.run(
        [sys.executable, "-c", program],
        cwd=environment.ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    output: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    return output


def test_loaded_objects_are_frozen_and_young_collections_come_less_often() -> None:
    result = in_child_python(
        "import tripbook.main\n"
        "from tripbook.core.gc_tuning import tune_garbage_collector\n"
        "app = tripbook.main.create_app()\n"
        "setup = tune_garbage_collector(50_000)\n"
        "result = {'returned': [list(setup.thresholds), setup.frozen_objects],\n"
        "          'actual': [list(gc.get_threshold()), gc.get_freeze_count()],\n"
        "          'enabled': gc.isenabled()}"
    )

    thresholds, frozen = result["actual"]
    assert result["returned"] == result["actual"]
    assert thresholds == [50_000, 10, 10]
    assert frozen > 50_000  # the imported modules and the app, not a handful
    assert result["enabled"] is True


def test_zero_keeps_pythons_defaults() -> None:
    result = in_child_python(
        "from tripbook.core.gc_tuning import tune_garbage_collector\n"
        "before = list(gc.get_threshold())\n"
        "tune_garbage_collector(0)\n"
        "result = {'before': before, 'after': list(gc.get_threshold()),\n"
        "          'frozen': gc.get_freeze_count()}"
    )

    assert result["after"] == result["before"]
    assert result["frozen"] == 0


def test_cycles_made_after_tuning_are_still_collected_without_asking() -> None:
    # A cycle is dropped, then more containers than the threshold are kept alive: the
    # collector must run by itself and reclaim the cycle.
    result = in_child_python(
        "from tripbook.core.gc_tuning import tune_garbage_collector\n"
        "tune_garbage_collector(5_000)\n"
        "class Node: pass\n"
        "node = Node(); node.me = node; alive = weakref.ref(node); del node\n"
        "before = alive() is not None\n"
        "runs = gc.get_stats()[0]['collections']\n"
        "kept = [[] for _ in range(6_000)]\n"
        "result = {'before': before, 'after': alive() is not None,\n"
        "          'young_collections': gc.get_stats()[0]['collections'] - runs}"
    )

    assert result["before"] is True
    assert result["after"] is False
    assert result["young_collections"] >= 1


def collector_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("event") == "garbage_collector"]


@pytest.mark.slow
def test_every_gunicorn_worker_tunes_its_collector(log_dir: Path) -> None:
    # run_gunicorn returns once every worker has started, which is after post_worker_init.
    with run_gunicorn(log_dir, workers=2) as server:
        lines = collector_lines(server.log_lines())

    assert len(lines) == 2
    for line in lines:
        assert line["thresholds"] == [50_000, 10, 10]
        assert line["frozen_objects"] > 50_000
