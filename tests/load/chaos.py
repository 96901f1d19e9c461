"""Payment chaos for ``make load --payment-chaos``: the payment sandbox misbehaves in phases.

While locust runs, a thread drives the sandbox through a fixed schedule derived from the run
time: calm, latency above the gateway timeout (every charge and refund times out at the
worker, yet is applied), calm, random 503s before or after applying (seeded), calm, both at
once (each disturbed phase twice as long as a calm one), and calm again for the rest of the
run, so the worker and reconciliation can settle
everything during the drain. Each phase change is logged with its wall-clock time and its
offset from the start. The thread ends by itself with the schedule, and ``stop()`` (the run
ended early, Ctrl-C) cuts it short; either way the sandbox is left calm.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from tests.support.sandboxes import PaymentSandbox

LATENCY_S = 1.5  # above the chaos gateway timeout (1 s): every call times out at the worker
ERROR_RATE = 0.3
CHAOS_SHARE = 0.8  # of the run time; the rest of the run (and the drain) is calm
MIN_PHASE_S = 2.0


@dataclass(frozen=True, slots=True)
class Phase:
    name: str
    start_s: float  # offset from the start of the run
    duration_s: float
    latency_s: float = 0.0
    error_rate: float = 0.0

    @property
    def calm(self) -> bool:
        return self.latency_s == 0 and self.error_rate == 0

    def describe(self) -> str:
        if self.calm:
            return "latency 0, faults 0"
        return f"latency {self.latency_s:g} s, faults {self.error_rate:.0%}"


def schedule(
    run_time_s: float, *, latency_s: float = LATENCY_S, error_rate: float = ERROR_RATE
) -> list[Phase]:
    """The phases for a run of ``run_time_s``: chaos in the first ``CHAOS_SHARE`` of it,
    alternating with calm, then calm to the end (the last phase has no end).

    A disturbed phase lasts twice a calm one: long enough that charges spend their task
    retries and are handed to reconciliation, not just retried once into the next calm."""
    pattern = [  # (name, length in units, latency, error rate)
        ("calm", 1, 0.0, 0.0),
        ("latency", 2, latency_s, 0.0),
        ("calm", 1, 0.0, 0.0),
        ("faults", 2, 0.0, error_rate),
        ("calm", 1, 0.0, 0.0),
        ("latency+faults", 2, latency_s, error_rate),
    ]
    window = CHAOS_SHARE * run_time_s
    unit = max(MIN_PHASE_S, window / sum(units for _, units, _, _ in pattern))
    phases: list[Phase] = []
    start = 0.0
    for name, units, latency, rate in pattern:
        length = units * unit
        if start + length > window + 1e-9:
            break
        phases.append(Phase(name, start, length, latency, rate))
        start += length
    if phases and phases[-1].calm:  # a calm phase just before the final calm one: merge
        start = phases.pop().start_s
    phases.append(Phase("calm (chaos over)", start, float("inf")))
    return phases


class PaymentChaos:
    """The thread that applies ``schedule()`` to the sandbox; a context manager."""

    def __init__(
        self,
        sandbox: PaymentSandbox,
        phases: list[Phase],
        *,
        seed: int,
        say: Callable[[str], None],
        log_path: Path | None = None,
    ) -> None:
        self.sandbox = sandbox
        self.phases = phases
        self.seed = seed
        self._say = say
        self._log_path = log_path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="payment-chaos", daemon=True)
        self._started = 0.0
        self.errors = 0

    def __enter__(self) -> PaymentChaos:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        self._started = time.monotonic()
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """End the chaos now (if it is not over), leaving the sandbox calm."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        if self._thread.is_alive():  # a sandbox call stuck beyond its own timeouts
            self._log("chaos thread did not stop; setting the sandbox calm from here")
            self._apply(Phase("calm (forced)", 0.0, 0.0))

    def _run(self) -> None:
        try:
            for index, phase in enumerate(self.phases):
                if self._stop.is_set():
                    break
                self._apply(phase, seed=self.seed + index)
                if phase.duration_s == float("inf"):
                    return  # the final calm phase: nothing left to do
                end = self._started + phase.start_s + phase.duration_s
                if self._stop.wait(max(0.0, end - time.monotonic())):
                    break
        finally:
            if self._stop.is_set() or not self.phases or not self.phases[-1].calm:
                self._apply(Phase("calm (stopped)", 0.0, 0.0))

    def _apply(self, phase: Phase, *, seed: int | None = None) -> None:
        offset = time.monotonic() - self._started
        try:
            self.sandbox.set_latency(phase.latency_s)
            self.sandbox.set_faults(phase.error_rate, seed=seed if phase.error_rate else None)
        except Exception as exc:  # the run goes on; the checks will tell what it did
            self.errors += 1
            self._log(f"+{offset:6.1f} s phase {phase.name}: FAILED to set ({exc!r})")
            return
        seeded = f", seed {seed}" if phase.error_rate else ""
        until = "" if phase.duration_s == float("inf") else f" for {phase.duration_s:.1f} s"
        self._log(f"+{offset:6.1f} s phase {phase.name}: {phase.describe()}{seeded}{until}")

    def _log(self, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S.%f")[:-3]
        line = f"[chaos {stamp}Z] {message}"
        self._say(line)
        if self._log_path is not None:
            with self._log_path.open("a") as log:
                log.write(line + "\n")
