"""What the bench measures: each scenario names its server, its URL and its wrk script."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

TRIP_CLIENTS = 1000  # distinct X-Forwarded-For addresses for trip reads


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """A gunicorn to start: ``app`` None serves the config's ``tripbook.main:create_app()``."""

    name: str
    app: str | None
    env: dict[str, str] = field(default_factory=dict)


BARE = ServerSpec("bare", "tests.bench.apps.bare:app")
FASTAPI_PLAIN = ServerSpec("fastapi-plain", "tests.bench.apps.fastapi_plain:app")
TRIPBOOK = ServerSpec("tripbook", None)
# Long enough that the measured reads are all Redis hits once the warm-up filled the cache.
TRIPBOOK_CACHED = ServerSpec("tripbook-cache", None, {"TRIPBOOK_TRIP_CACHE_TTL_S": "300"})
TRIPBOOK_UNCACHED = ServerSpec("tripbook-no-cache", None, {"TRIPBOOK_TRIP_CACHE_TTL_S": "0"})
NAIVE = ServerSpec("naive", "tests.bench.naive.app:create_app()")


@dataclass(frozen=True, slots=True)
class DataFiles:
    """Files the wrk scripts read: bearer tokens, departure ids, trip paths."""

    tokens: Path
    spread_departures: Path
    hot_departure: Path
    trip_paths: Path


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    title: str
    server: ServerSpec
    path: str
    script: str
    script_args: Callable[[DataFiles], list[str]] = lambda _: []
    needs_data: bool = False
    holds: bool = False


def _spread(files: DataFiles) -> Path:
    return files.spread_departures


def _hot(files: DataFiles) -> Path:
    return files.hot_departure


def _hold_scenario(
    name: str, title: str, server: ServerSpec, departures: Callable[[DataFiles], Path]
) -> Scenario:
    """POST /v1/reservations with the bench's tokens over ``departures``."""
    return Scenario(
        name,
        title,
        server,
        "/v1/reservations",
        "holds.lua",
        lambda files: [str(files.tokens), str(departures(files))],
        needs_data=True,
        holds=True,
    )


def _trips(files: DataFiles) -> list[str]:
    return [str(files.trip_paths), str(TRIP_CLIENTS)]


SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario("bare", "1. bare ASGI (floor)", BARE, "/healthz", "status.lua"),
        Scenario(
            "fastapi_plain", "2. FastAPI, no middleware", FASTAPI_PLAIN, "/healthz", "status.lua"
        ),
        Scenario("healthz", "3. tripbook /healthz, full stack", TRIPBOOK, "/healthz", "status.lua"),
        Scenario(
            "trip_cached",
            "4a. trip detail, cached (Redis hit)",
            TRIPBOOK_CACHED,
            "/v1/trips",
            "trips.lua",
            _trips,
            needs_data=True,
        ),
        Scenario(
            "trip_uncached",
            "4b. trip detail, uncached",
            TRIPBOOK_UNCACHED,
            "/v1/trips",
            "trips.lua",
            _trips,
            needs_data=True,
        ),
        # Each pair a target compares runs back to back, so drift in the machine's speed
        # (seen up to 2x within minutes here) falls on both sides of the ratio alike.
        _hold_scenario("holds_spread", "5a. tripbook holds, 1,000 departures", TRIPBOOK, _spread),
        _hold_scenario("naive_spread", "6a. naive holds, 1,000 departures", NAIVE, _spread),
        _hold_scenario("holds_hot", "5b. tripbook holds, 1 hot departure", TRIPBOOK, _hot),
        _hold_scenario("naive_hot", "6b. naive holds, 1 hot departure", NAIVE, _hot),
    )
}


@dataclass(frozen=True, slots=True)
class Ratio:
    title: str
    numerator: str
    denominator: str
    target: float | None = None


RATIOS = (
    Ratio("3/2 middleware overhead (healthz / FastAPI plain)", "healthz", "fastapi_plain", 0.7),
    Ratio("3/1 full stack / bare ASGI floor", "healthz", "bare"),
    Ratio("tripbook holds spread / naive spread", "holds_spread", "naive_spread", 3.0),
    Ratio("tripbook holds hot / naive hot", "holds_hot", "naive_hot", 3.0),
)
HOT_P99_TARGET_MS = 250.0  # p99 of tripbook's hot holds at 64 connections
