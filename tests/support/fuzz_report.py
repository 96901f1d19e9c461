"""What a schemathesis run did, per operation, from its JSON and NDJSON reports."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class OperationStats:
    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    accepted: int = 0  # positive cases the API served (2xx), as schemathesis counts them
    positive: int = 0  # positive cases answered, served or not


@dataclass(frozen=True)
class FuzzReport:
    run: dict[str, Any]  # the JSON report
    operations: dict[str, OperationStats]

    @property
    def warnings(self) -> dict[str, list[str]]:
        return {kind: items for kind, items in self.run["warnings"].items() if items}

    def unreached(self) -> list[str]:
        return sorted(label for label, stats in self.operations.items() if not stats.accepted)

    def table(self) -> str:
        rows = [f"{'operation':<48} {'cases':>5} {'served':>7}  statuses"]
        for label, stats in sorted(self.operations.items()):
            statuses = " ".join(f"{code}:{n}" for code, n in sorted(stats.statuses.items()))
            served = f"{stats.accepted}/{stats.positive}"
            rows.append(f"{label:<48} {stats.cases:>5} {served:>7}  {statuses}")
        total = sum(stats.cases for stats in self.operations.values())
        rows.append(f"{len(self.operations)} operations, {total} cases")
        return "\n".join(rows)


def read_report(directory: Path) -> FuzzReport:
    [json_report] = directory.glob("*.json")
    [events] = directory.glob("*.ndjson")
    run = json.loads(json_report.read_text())
    operations: dict[str, OperationStats] = {}
    for line in events.read_text().splitlines():
        scenario = json.loads(line).get("ScenarioFinished")
        if scenario is not None:
            _count(operations, scenario["recorder"])
    for label, phases in run["valid_rates"].items():
        stats = operations.setdefault(label, OperationStats())
        for rate in phases.values():
            stats.accepted += rate["accepted"]
            stats.positive += sum(rate.values())
    return FuzzReport(run=run, operations=operations)


def _count(operations: dict[str, OperationStats], recorder: dict[str, Any]) -> None:
    interactions = recorder.get("interactions", {})
    if not interactions:
        return  # a skipped scenario (no examples in the schema, say)
    stats = operations.setdefault(recorder["label"], OperationStats())
    for interaction in interactions.values():
        response = interaction.get("response")
        stats.cases += 1
        stats.statuses[response["status_code"] if response else 0] += 1
