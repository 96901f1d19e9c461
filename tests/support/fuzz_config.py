"""The schemathesis.toml for tests/test_fuzz.py, written per run around the seeded world.

Real ids reach the fuzzer through fuzz dictionaries bound to parameters, the documented way
to stop an operation answering 404 to everything ("Force a Known-Real Value Into a Path
Parameter"); each is used with ``REAL_ID_PROBABILITY`` so generated ids still probe the 404
path. Tokens stay out of the file: schemathesis reads ``${VAR}`` from its environment.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.factories import PASSWORD
from tests.support.fuzz_seed import FuzzWorld

CUSTOMER_TOKEN_ENV = "TRIPBOOK_FUZZ_CUSTOMER_TOKEN"
OPS_TOKEN_ENV = "TRIPBOOK_FUZZ_OPS_TOKEN"
# Only ops may call these; every other operation is called as the seeded customer.
OPS_OPERATIONS = [
    "POST /v1/trips",
    "POST /v1/trips/{trip_id}/departures",
    "GET /v1/ops/refunds",
    "POST /v1/ops/refunds/{refund_id}/retry",
]
LOGIN_OPERATION = "POST /v1/auth/token"
REAL_ID_PROBABILITY = 0.8


def write_config(path: Path, world: FuzzWorld) -> Path:
    path.write_text(render(config(world)))
    return path


def config(world: FuzzWorld) -> dict[str, Any]:
    # A departure must leave in the future and arrive after it leaves, which random instants
    # rarely do: a valid schedule, used as often as the real ids.
    departs_at = datetime.now(UTC).replace(microsecond=0) + timedelta(days=90)
    return {
        "headers": {"Authorization": _bearer(CUSTOMER_TOKEN_ENV)},
        # Every warning fails the run: each one says operations went untested (only ever
        # 401/403, 404 or 422, rate limited, ids never used...).
        "warnings": {"fail-on": True},
        "dictionaries": {
            "trips": {"values": world.trip_ids},
            "departures": {"values": world.departure_ids},
            "reservations": {"values": world.reservation_ids},
            "refunds": {"values": world.refund_ids},
            "emails": {"values": [world.customer.email]},
            "passwords": {"values": [PASSWORD]},
            "departs_at": {"values": [departs_at.isoformat()]},
            "arrives_at": {"values": [(departs_at + timedelta(hours=3)).isoformat()]},
            **{
                _cursor_dictionary(label): {"values": [cursor]}
                for label, cursor in world.cursors.items()
            },
        },
        "parameters": {
            "path.trip_id": _real("trips"),
            "body.departure_id": _real("departures"),
            "path.reservation_id": _real("reservations"),
            "path.refund_id": _real("refunds"),
            "body.departs_at": _real("departs_at"),
            "body.arrives_at": _real("arrives_at"),
        },
        "operations": [
            {
                "include-name": OPS_OPERATIONS,
                "headers": {"Authorization": _bearer(OPS_TOKEN_ENV)},
            },
            {
                # Otherwise every login is a 401 and the token endpoint is never reached.
                "include-name": LOGIN_OPERATION,
                "parameters": {
                    "body.username": _real("emails"),
                    "body.password": _real("passwords"),
                },
            },
            # A listing's second page, besides the malformed cursors the fuzzer makes up.
            *(
                {
                    "include-name": label,
                    "parameters": {"query.cursor": _real(_cursor_dictionary(label))},
                }
                for label in world.cursors
            ),
        ],
    }


def render(document: dict[str, Any]) -> str:
    """TOML for ``document``: top-level keys as inline values, ``operations`` as
    ``[[operations]]`` tables (the standard library reads TOML but does not write it)."""
    operations = document.get("operations", [])
    lines = [f"{key} = {_inline(value)}" for key, value in document.items() if key != "operations"]
    for operation in operations:
        lines += ["", "[[operations]]"]
        lines += [f"{key} = {_inline(value)}" for key, value in operation.items()]
    return "\n".join(lines) + "\n"


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_inline(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_inline(item) for item in value) + "]"
    # JSON's true/false, numbers and (ASCII) strings are TOML's too.
    return json.dumps(value, ensure_ascii=True)


def _cursor_dictionary(label: str) -> str:
    """The dictionary of a listing's cursors: GET /v1/ops/refunds -> cursors_v1_ops_refunds."""
    return "cursors" + label.split(" ")[1].replace("/", "_")


def _real(dictionary: str) -> dict[str, Any]:
    return {"dictionary": dictionary, "probability": REAL_ID_PROBABILITY}


def _bearer(env: str) -> str:
    return f"Bearer ${{{env}}}"
