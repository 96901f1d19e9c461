"""What the local stack's JSON logs say about the money path, after a run: informational
figures printed under the checks (how often the gateway timed out or answered 503, how
many payments the worker retried or handed to reconciliation, what reconciliation settled)
and every warning or error the services logged, by process and event."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from tests.support.servers import json_log_lines

PROCESSES = {"worker": "load-worker-*.log", "beat": "beat-*.log", "api": "gunicorn-*.log"}
NOISY_LEVELS = frozenset({"warning", "error", "critical", "exception"})


def _lines(log_dir: Path, pattern: str) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for path in sorted(log_dir.glob(pattern)):
        lines.extend(json_log_lines(path.read_text(errors="replace")))
    return lines


def _event(line: dict[str, Any]) -> str:
    event = str(line.get("event", "?"))
    return event if len(event) <= 80 else event[:77] + "..."


def _counted(counter: Counter[str]) -> str:
    return ", ".join(f"{key}: {count}" for key, count in counter.most_common()) or "none"


def money_figures(log_dir: Path) -> list[str]:
    """The worker's side of the money path, one line per topic."""
    lines = _lines(log_dir, PROCESSES["worker"])
    calls: Counter[str] = Counter()
    settlements: Counter[str] = Counter()
    refunds: Counter[str] = Counter()
    retries: Counter[str] = Counter()
    reconciled_charges: Counter[str] = Counter()
    reconciled_refunds: Counter[str] = Counter()
    handed = passes = busy_passes = 0
    for line in lines:
        event = line.get("event")
        if event == "gateway_call":
            outcome = str(line.get("outcome"))
            if outcome != "Approved":
                outcome += f" ({str(line.get('detail', '')).split(':')[0]})"
            calls[f"{line.get('path')} {outcome}"] += 1
        elif event == "settlement":
            settlements[f"{line.get('result')} -> {line.get('settlement')}"] += 1
        elif event == "refund":
            refunds[f"{line.get('result')} -> {line.get('outcome')}"] += 1
        elif event == "task_retry":
            retries[str(line.get("task_name"))] += 1
        elif event == "payment_outcome_unknown":
            handed += 1
        elif event == "task_finished" and line.get("task_name") == "payments.reconcile":
            passes += 1
        elif event == "payments_reconciled":
            busy_passes += 1
            reconciled_charges.update(line.get("charges") or {})
            reconciled_refunds.update(line.get("refunds") or {})
    return [
        f"gateway calls: {_counted(calls)}",
        f"charge attempts: {_counted(settlements)}; refund attempts: {_counted(refunds)}",
        f"task retries: {_counted(retries)}; handed to reconciliation after the last retry: "
        f"{handed}",
        f"reconciliation: {passes} passes, {busy_passes} found something; charges "
        f"{{{_counted(reconciled_charges)}}}, refunds {{{_counted(reconciled_refunds)}}}",
    ]


def noise(log_dir: Path) -> list[str]:
    """Warnings and errors, per process: ``worker: warning payment_outcome_unknown x 3``."""
    found: list[str] = []
    for process, pattern in PROCESSES.items():
        counts: Counter[str] = Counter(
            f"{line.get('level')} {_event(line)}"
            for line in _lines(log_dir, pattern)
            if str(line.get("level", "")).lower() in NOISY_LEVELS
        )
        found.extend(f"{process}: {key} x {count}" for key, count in counts.most_common())
    return found
