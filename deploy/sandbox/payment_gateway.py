"""A local card processor for `make run` and the tests: real HTTP, scripted by card token.

The token decides what happens, so a test can ask for every path the real gateway takes:

    tok_approve, tok_ok*          201 succeeded
    tok_decline                   402 card_declined                      (final)
    tok_fail_<N>_then_approve     503 for the key's first N attempts, then 201
    tok_timeout                   hangs --timeout-delay-s, then 504       (not final)
    tok_slow_<MS>                 waits MS milliseconds, then 201
    tok_refund_slow_<MS>          201; each refund of the charge waits MS milliseconds first
    anything else                 400 invalid_token                      (nothing recorded)

`PUT /_sandbox/latency {"delay_s": S}` makes the whole processor slow: every charge and
refund waits S seconds before it is handled, then is handled as usual (a caller that gave
up meanwhile still gets charged, as with a real processor); `delay_s: 0` ends it.

Idempotency follows the usual processor contract: a key is bound to the first body sent
with it; once it has a final outcome (any 2xx or 4xx) that response is replayed verbatim.
Requests for one key are serialised by a lock, so concurrent retries never charge twice.
State is in memory and per process; `POST /_sandbox/reset` clears it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import secrets
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Outcome = tuple[int, dict[str, Any]]

logger = logging.getLogger("sandbox.payments")

FAIL_THEN_APPROVE = re.compile(r"tok_fail_(\d{1,3})_then_approve")
SLOW = re.compile(r"tok_slow_(\d{1,6})")
SLOW_REFUNDS = re.compile(r"tok_refund_slow_(\d{1,6})")
MAX_LATENCY_S = 600.0
CURRENCY = re.compile(r"[A-Z]{3}")
REQUEST_IDS_KEPT = 50


class BadRequest(Exception):
    """The body is not JSON of the expected shape: 400, and nothing is recorded."""


class MissingIdempotencyKey(Exception):
    """A money-moving request without a key could never be retried safely: 400."""


@dataclass(frozen=True)
class Script:
    """What a card token asks the sandbox to do."""

    outcome: Literal["approve", "decline", "timeout"] = "approve"
    fail_first: int = 0
    delay_s: float = 0.0
    refund_delay_s: float = 0.0


def _script(card: str) -> Script | None:
    if card == "tok_approve" or card.startswith("tok_ok"):
        return Script()
    if card == "tok_decline":
        return Script(outcome="decline")
    if card == "tok_timeout":
        return Script(outcome="timeout")
    if failing := FAIL_THEN_APPROVE.fullmatch(card):
        return Script(fail_first=int(failing[1]))
    if slow := SLOW.fullmatch(card):
        return Script(delay_s=int(slow[1]) / 1000)
    if slow_refunds := SLOW_REFUNDS.fullmatch(card):
        return Script(refund_delay_s=int(slow_refunds[1]) / 1000)
    return None


@dataclass
class KeyRecord:
    """What one idempotency key has seen: the body it is bound to and its final answer."""

    fingerprint: str
    attempts: int = 0
    applied: int = 0
    final: Outcome | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class Charge:
    amount: int
    refunded: int = 0
    refund_delay_s: float = 0.0


@dataclass
class Ledger:
    """All sandbox state; one instance per app, only touched from the event loop."""

    charges: dict[str, KeyRecord] = field(default_factory=dict)
    refunds: dict[str, KeyRecord] = field(default_factory=dict)
    charge_by_id: dict[str, Charge] = field(default_factory=dict)
    request_ids: deque[str] = field(default_factory=lambda: deque(maxlen=REQUEST_IDS_KEPT))
    # How long every charge and refund waits before it is handled (PUT /_sandbox/latency).
    latency_s: float = 0.0


def _positive_int(value: Any) -> int:
    # bool is an int subclass; `true` is not an amount.
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BadRequest
    return value


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest
    return value


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError both land here
        raise BadRequest from exc
    if not isinstance(body, dict):
        raise BadRequest
    return body


def _error(status: int, error: str, **extra: Any) -> Outcome:
    return status, {"error": error, **extra}


def _respond(outcome: Outcome, *, replayed: bool = False) -> JSONResponse:
    status, body = outcome
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse(body, status_code=status, headers=headers)


def _idempotency_key(request: Request) -> str:
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        raise MissingIdempotencyKey
    return key


async def _idempotent(
    key: str,
    records: dict[str, KeyRecord],
    body: dict[str, Any],
    process: Callable[[KeyRecord, str], Awaitable[Outcome]],
) -> Response:
    """Bind the key to the body, serialise its requests, and replay final outcomes."""
    fingerprint = json.dumps(body, sort_keys=True, separators=(",", ":"))
    record = records.setdefault(key, KeyRecord(fingerprint))
    if record.fingerprint != fingerprint:
        return _respond(_error(409, "idempotency_key_mismatch"))
    async with record.lock:
        record.attempts += 1
        if record.final is not None:
            return _respond(record.final, replayed=True)
        outcome = await process(record, key)
        if outcome[0] < 500:
            record.final = outcome
        return _respond(outcome)


def create_app(timeout_delay_s: float) -> ASGIApp:
    """Build the gateway app; all state lives in this closure, so each app starts empty."""
    ledger = Ledger()

    def approve(record: KeyRecord, key: str, amount: int, currency: str, script: Script) -> Outcome:
        charge_id = f"ch_{secrets.token_hex(12)}"
        ledger.charge_by_id[charge_id] = Charge(amount, refund_delay_s=script.refund_delay_s)
        record.applied += 1
        body = {"amount": amount, "currency": currency, "idempotency_key": key}
        return 201, {"id": charge_id, "status": "succeeded", **body}

    async def create_charge(request: Request) -> Response:
        key = _idempotency_key(request)
        body = await _json_object(request)
        amount, card = _positive_int(body.get("amount")), _string(body.get("token"))
        currency = _string(body.get("currency"))
        if not CURRENCY.fullmatch(currency):
            raise BadRequest
        script = _script(card)
        if script is None:
            return _respond(_error(400, "invalid_token"))

        async def process(record: KeyRecord, key: str) -> Outcome:
            if script.outcome == "decline":
                return _error(402, "card_declined", message="The card was declined.")
            if script.outcome == "timeout":
                await asyncio.sleep(timeout_delay_s)
                return _error(504, "processor_timeout")
            if record.attempts <= script.fail_first:
                return _error(503, "processor_unavailable")
            await asyncio.sleep(script.delay_s)
            return approve(record, key, amount, currency, script)

        await asyncio.sleep(ledger.latency_s)
        return await _idempotent(key, ledger.charges, body, process)

    async def create_refund(request: Request) -> Response:
        key = _idempotency_key(request)
        body = await _json_object(request)
        charge_id, amount = _string(body.get("charge_id")), _positive_int(body.get("amount"))

        async def process(record: KeyRecord, _key: str) -> Outcome:
            charge = ledger.charge_by_id.get(charge_id)
            if charge is None:
                return _error(404, "no_such_charge")
            await asyncio.sleep(charge.refund_delay_s)
            if charge.refunded + amount > charge.amount:
                remaining = charge.amount - charge.refunded
                return _error(409, "refund_exceeds_charge", refundable=remaining)
            # No await between the check and the update: atomic on one event loop.
            charge.refunded += amount
            record.applied += 1
            refund_id = f"re_{secrets.token_hex(12)}"
            return 201, {
                "id": refund_id,
                "status": "succeeded",
                "charge_id": charge_id,
                "amount": amount,
            }

        await asyncio.sleep(ledger.latency_s)
        return await _idempotent(key, ledger.refunds, body, process)

    async def stats(_: Request) -> Response:
        def summary(records: dict[str, KeyRecord]) -> dict[str, dict[str, int]]:
            return {k: {"applied": r.applied, "attempts": r.attempts} for k, r in records.items()}

        return JSONResponse(
            {
                "charges": summary(ledger.charges),
                "refunds": summary(ledger.refunds),
                "last_request_ids": list(ledger.request_ids),
            }
        )

    async def set_latency(request: Request) -> Response:
        delay_s = (await _json_object(request)).get("delay_s")
        if isinstance(delay_s, bool) or not isinstance(delay_s, int | float):
            raise BadRequest
        if not 0 <= delay_s <= MAX_LATENCY_S:
            raise BadRequest
        ledger.latency_s = float(delay_s)
        logger.info("latency set to %.3fs", ledger.latency_s)
        return JSONResponse({"delay_s": ledger.latency_s})

    async def reset(_: Request) -> Response:
        ledger.latency_s = 0.0
        ledger.charges.clear()
        ledger.refunds.clear()
        ledger.charge_by_id.clear()
        ledger.request_ids.clear()
        return Response(status_code=204)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            Route("/v1/charges", create_charge, methods=["POST"]),
            Route("/v1/refunds", create_refund, methods=["POST"]),
            Route("/_sandbox/stats", stats, methods=["GET"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/_sandbox/latency", set_latency, methods=["PUT"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        exception_handlers={
            BadRequest: _bad_request,
            MissingIdempotencyKey: _missing_key,
            HTTPException: _http_error,
        },
    )
    return RequestLog(app, ledger.request_ids)


async def _bad_request(_: Request, __: Exception) -> Response:
    return JSONResponse({"error": "bad_request"}, status_code=400)


async def _missing_key(_: Request, __: Exception) -> Response:
    return JSONResponse({"error": "idempotency_key_required"}, status_code=400)


async def _http_error(_: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer JSON too, like every other response here."""
    assert isinstance(exc, HTTPException)
    error = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSONResponse({"error": error}, status_code=exc.status_code, headers=exc.headers)


class RequestLog:
    """One log line per request carrying the caller's X-Request-ID, written before the
    response starts so a test that has the response can already read the line."""

    def __init__(self, app: ASGIApp, request_ids: deque[str]) -> None:
        self.app = app
        self.request_ids = request_ids

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = dict(scope["headers"]).get(b"x-request-id")
        request_id = raw.decode("latin-1") if raw else None
        if request_id:
            self.request_ids.append(request_id)
        started = time.perf_counter()

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                logger.info(
                    "%s %s -> %d request_id=%s duration_ms=%.1f",
                    scope["method"],
                    scope["path"],
                    message["status"],
                    request_id or "-",
                    (time.perf_counter() - started) * 1000,
                )
            await send(message)

        await self.app(scope, receive, send_logged)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--timeout-delay-s", type=float, default=30.0)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stdout,
    )
    app = create_app(args.timeout_delay_s)
    # Our middleware writes the access line (with the request id), so uvicorn's is off.
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
