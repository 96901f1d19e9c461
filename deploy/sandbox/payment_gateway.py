"""A local card processor for `make run` and the tests: real HTTP, scripted by card token.

The token decides what happens, so a test can ask for every path the real gateway takes:

    tok_approve, tok_ok*          201 succeeded
    tok_decline                   402 card_declined                      (final)
    tok_fail_<N>_then_approve     503 for the key's first N attempts, then 201
    tok_busy_<N>_then_approve     409 idempotency_key_in_use for the key's first N attempts,
                                  then 201 (a processor still busy with an earlier attempt)
    tok_timeout                   hangs --timeout-delay-s, then 504       (not final)
    tok_slow_<MS>                 waits MS milliseconds, then 201
    tok_hang_after_apply_<MS>     applied and final at once, but the 201 is sent MS
                                  milliseconds later (took the money, answers late)
    tok_refund_slow_<MS>          201; each refund of the charge waits MS milliseconds first
    tok_refund_refuse_<N>         201; the charge's first N refund requests (whatever their
                                  keys) get 402 refund_declined (final), later ones as usual
    anything else                 400 invalid_token                      (nothing recorded)

Endpoints:

    POST /v1/charges              {"amount", "currency", "token"} + Idempotency-Key header
    POST /v1/refunds              {"charge_id", "amount"} + Idempotency-Key header
    GET  /v1/charges[?idempotency_key=K]   {"items": [{"id", "idempotency_key", "status",
                                  "amount", "currency", "refunded", "error"}]}
    GET  /v1/refunds[?idempotency_key=K]   {"items": [{"id", "idempotency_key", "status",
                                  "charge_id", "amount", "error"}]}
    GET  /_sandbox/stats          {"charges"/"refunds": {key: {"applied", "attempts"}},
                                  "last_request_ids", "faults_injected": {"before", "after"}}
    PUT  /_sandbox/latency        {"delay_s": S}
    PUT  /_sandbox/faults         {"error_rate": R, "seed": optional int}
    POST /_sandbox/reset          204; forgets everything and ends latency and faults
    GET  /healthz

A listing shows what a reconciliation would find at a real processor: a key appears once it
has a final outcome ("succeeded" for 2xx, "failed" for 4xx, with its error) or while a request
for it is being processed ("processing"); a key that only ever got 5xx or 409 is absent.

`PUT /_sandbox/latency {"delay_s": S}` makes the whole processor slow: every charge and
refund (replays and 409s too) waits S seconds before it is handled, then is handled as usual
(a caller that gave up meanwhile still gets charged, as with a real processor); `delay_s: 0`
ends it.

`PUT /_sandbox/faults {"error_rate": R}` (0 <= R <= 1) fails each charge and refund that is
not a replay or a 409 with a 503 processor_unavailable with probability R: half of the time
before it is processed (nothing happens), half of the time after (it is applied and final, so
replays return it; only this one answer is lost). A `seed` makes the draws repeatable;
`error_rate: 0` ends it. The stats count the faults injected since the last reset.

Idempotency follows the usual processor contract: a key is bound to the first body sent with
it (another body: 422 idempotency_key_mismatch). Once it has a final outcome (any 2xx or 4xx
but 409) that response is replayed verbatim with `Idempotent-Replayed: true`; while a request
for it is being processed, another one gets 409 idempotency_key_in_use at once, so concurrent
retries never charge twice. State is in memory and per process; `POST /_sandbox/reset` clears it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import re
import secrets
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

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
Item = dict[str, Any]

logger = logging.getLogger("sandbox.payments")

FAIL_THEN_APPROVE = re.compile(r"tok_fail_(\d{1,3})_then_approve")
BUSY_THEN_APPROVE = re.compile(r"tok_busy_(\d{1,3})_then_approve")
SLOW = re.compile(r"tok_slow_(\d{1,6})")
HANG_AFTER_APPLY = re.compile(r"tok_hang_after_apply_(\d{1,6})")
SLOW_REFUNDS = re.compile(r"tok_refund_slow_(\d{1,6})")
REFUSED_REFUNDS = re.compile(r"tok_refund_refuse_(\d{1,3})")
MAX_LATENCY_S = 600.0
CURRENCY = re.compile(r"[A-Z]{3}")
REQUEST_IDS_KEPT = 50
UNAVAILABLE: Outcome = (503, {"error": "processor_unavailable"})
KEY_IN_USE: Outcome = (409, {"error": "idempotency_key_in_use"})

FaultPoint = Literal["before", "after"]
Status = Literal["succeeded", "failed", "processing"]


class BadRequest(Exception):
    """The body is not JSON of the expected shape: 400, and nothing is recorded."""


class MissingIdempotencyKey(Exception):
    """A money-moving request without a key could never be retried safely: 400."""


@dataclass(frozen=True)
class Script:
    """What a card token asks the sandbox to do."""

    outcome: Literal["approve", "decline", "timeout"] = "approve"
    fail_first: int = 0
    busy_first: int = 0
    delay_s: float = 0.0
    answer_delay_s: float = 0.0
    refund_delay_s: float = 0.0
    refund_refusals: int = 0


def _script(card: str) -> Script | None:
    if card == "tok_approve" or card.startswith("tok_ok"):
        return Script()
    if card == "tok_decline":
        return Script(outcome="decline")
    if card == "tok_timeout":
        return Script(outcome="timeout")
    if failing := FAIL_THEN_APPROVE.fullmatch(card):
        return Script(fail_first=int(failing[1]))
    if busy := BUSY_THEN_APPROVE.fullmatch(card):
        return Script(busy_first=int(busy[1]))
    if slow := SLOW.fullmatch(card):
        return Script(delay_s=int(slow[1]) / 1000)
    if hanging := HANG_AFTER_APPLY.fullmatch(card):
        return Script(answer_delay_s=int(hanging[1]) / 1000)
    if slow_refunds := SLOW_REFUNDS.fullmatch(card):
        return Script(refund_delay_s=int(slow_refunds[1]) / 1000)
    if refused := REFUSED_REFUNDS.fullmatch(card):
        return Script(refund_refusals=int(refused[1]))
    return None


@dataclass
class KeyRecord:
    """What one idempotency key has seen: the body it is bound to, its final answer, and
    whether a request for it is being processed right now."""

    fingerprint: str
    amount: int
    attempts: int = 0
    applied: int = 0
    final: Outcome | None = None
    in_flight: bool = False

    def status(self) -> Status | None:
        """What a lookup at the processor shows; None: nothing happened under this key."""
        if self.final is not None:
            return "succeeded" if self.final[0] < 300 else "failed"
        return "processing" if self.in_flight else None

    def error(self) -> str | None:
        if self.final is None or self.final[0] < 300:
            return None
        error: str = self.final[1]["error"]
        return error


@dataclass(kw_only=True)
class ChargeKey(KeyRecord):
    currency: str
    charge_id: str | None = None  # set once the charge is applied


@dataclass(kw_only=True)
class RefundKey(KeyRecord):
    charge_id: str  # the charge to refund, as the body named it
    refund_id: str | None = None  # set once the refund is applied


R = TypeVar("R", bound=KeyRecord)  # a charge's or a refund's record


@dataclass
class Charge:
    amount: int
    refunded: int = 0
    refund_delay_s: float = 0.0
    refusals_left: int = 0  # refund requests still to be declined (tok_refund_refuse_<N>)


@dataclass
class Faults:
    """Injected 503s (PUT /_sandbox/faults) and how many there were since the last reset."""

    error_rate: float = 0.0
    rng: random.Random = field(default_factory=random.Random)
    injected: dict[FaultPoint, int] = field(default_factory=lambda: {"before": 0, "after": 0})

    def draw(self) -> FaultPoint | None:
        # No draw while off, so a seeded sequence starts where the faults were turned on.
        if self.error_rate == 0 or self.rng.random() >= self.error_rate:
            return None
        return "before" if self.rng.random() < 0.5 else "after"


@dataclass
class Ledger:
    """All sandbox state; one instance per app, only touched from the event loop."""

    charges: dict[str, ChargeKey] = field(default_factory=dict)
    refunds: dict[str, RefundKey] = field(default_factory=dict)
    charge_by_id: dict[str, Charge] = field(default_factory=dict)
    request_ids: deque[str] = field(default_factory=lambda: deque(maxlen=REQUEST_IDS_KEPT))
    # How long every charge and refund waits before it is handled (PUT /_sandbox/latency).
    latency_s: float = 0.0
    faults: Faults = field(default_factory=Faults)


def _positive_int(value: Any) -> int:
    # bool is an int subclass; `true` is not an amount.
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BadRequest
    return value


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest
    return value


def _number_between(value: Any, low: float, high: float) -> float:
    # `not low <= value <= high` also refuses NaN, which the JSON parser lets through.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest
    if not low <= value <= high:
        raise BadRequest
    return float(value)


def _optional_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
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


def _fingerprint(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


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
    record: R,
    fingerprint: str,
    process: Callable[[R], Awaitable[Outcome]],
    faults: Faults,
) -> Response:
    """Hold the key to its first body, replay final outcomes, turn away a second request
    while one is being processed, and inject the faults asked for."""
    if record.fingerprint != fingerprint:
        return _respond(_error(422, "idempotency_key_mismatch"))
    record.attempts += 1
    if record.final is not None:
        return _respond(record.final, replayed=True)
    if record.in_flight:
        # What real processors do; waiting here would hold the caller's connection instead.
        return _respond(KEY_IN_USE)
    fault = faults.draw()
    if fault == "before":
        faults.injected["before"] += 1
        return _respond(UNAVAILABLE)
    record.in_flight = True
    try:
        outcome = await process(record)
    finally:
        record.in_flight = False
    # 5xx and 409 say "not done (yet)": the caller must be able to retry under the key.
    if outcome[0] < 500 and outcome[0] != 409:
        record.final = outcome
    if fault == "after":
        # Applied and final, yet this caller hears 503: only a retry tells it the truth.
        faults.injected["after"] += 1
        return _respond(UNAVAILABLE)
    return _respond(outcome)


def _items(records: Mapping[str, R], key: str | None, item: Callable[[str, R], Item]) -> Response:
    """A processor's list endpoint: the keys where something happened, or just `key`."""
    if key is not None:
        records = {key: records[key]} if key in records else {}
    items = [item(k, r) for k, r in records.items() if r.status() is not None]
    return JSONResponse({"items": items})


def create_app(timeout_delay_s: float) -> ASGIApp:
    """Build the gateway app; all state lives in this closure, so each app starts empty."""
    ledger = Ledger()

    def approve(record: ChargeKey, key: str, script: Script) -> Outcome:
        charge_id = f"ch_{secrets.token_hex(12)}"
        ledger.charge_by_id[charge_id] = Charge(
            record.amount,
            refund_delay_s=script.refund_delay_s,
            refusals_left=script.refund_refusals,
        )
        record.applied += 1
        record.charge_id = charge_id
        body = {"amount": record.amount, "currency": record.currency, "idempotency_key": key}
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

        async def process(record: ChargeKey) -> Outcome:
            if script.outcome == "decline":
                return _error(402, "card_declined", message="The card was declined.")
            if script.outcome == "timeout":
                await asyncio.sleep(timeout_delay_s)
                return _error(504, "processor_timeout")
            if record.attempts <= script.fail_first:
                return UNAVAILABLE
            if record.attempts <= script.busy_first:
                return KEY_IN_USE
            await asyncio.sleep(script.delay_s)
            outcome = approve(record, key, script)
            if script.answer_delay_s:
                # The money is taken now: replays during the wait already get the 201.
                record.final = outcome
                await asyncio.sleep(script.answer_delay_s)
            return outcome

        await asyncio.sleep(ledger.latency_s)
        fingerprint = _fingerprint(body)
        record = ledger.charges.setdefault(key, ChargeKey(fingerprint, amount, currency=currency))
        return await _idempotent(record, fingerprint, process, ledger.faults)

    async def create_refund(request: Request) -> Response:
        key = _idempotency_key(request)
        body = await _json_object(request)
        charge_id, amount = _string(body.get("charge_id")), _positive_int(body.get("amount"))

        async def process(record: RefundKey) -> Outcome:
            charge = ledger.charge_by_id.get(charge_id)
            if charge is None:
                return _error(404, "no_such_charge")
            if charge.refusals_left > 0:
                charge.refusals_left -= 1
                return _error(402, "refund_declined")
            await asyncio.sleep(charge.refund_delay_s)
            if charge.refunded + amount > charge.amount:
                remaining = charge.amount - charge.refunded
                return _error(409, "refund_exceeds_charge", refundable=remaining)
            # No await between the check and the update: atomic on one event loop.
            charge.refunded += amount
            record.applied += 1
            record.refund_id = f"re_{secrets.token_hex(12)}"
            return 201, {
                "id": record.refund_id,
                "status": "succeeded",
                "charge_id": charge_id,
                "amount": amount,
            }

        await asyncio.sleep(ledger.latency_s)
        fingerprint = _fingerprint(body)
        record = ledger.refunds.setdefault(key, RefundKey(fingerprint, amount, charge_id=charge_id))
        return await _idempotent(record, fingerprint, process, ledger.faults)

    def charge_item(key: str, record: ChargeKey) -> Item:
        charge = ledger.charge_by_id.get(record.charge_id) if record.charge_id else None
        return {
            "id": record.charge_id,
            "idempotency_key": key,
            "status": record.status(),
            "amount": record.amount,
            "currency": record.currency,
            "refunded": charge.refunded if charge else 0,
            "error": record.error(),
        }

    def refund_item(key: str, record: RefundKey) -> Item:
        return {
            "id": record.refund_id,
            "idempotency_key": key,
            "status": record.status(),
            "charge_id": record.charge_id,
            "amount": record.amount,
            "error": record.error(),
        }

    async def list_charges(request: Request) -> Response:
        key = request.query_params.get("idempotency_key")
        return _items(ledger.charges, key, charge_item)

    async def list_refunds(request: Request) -> Response:
        key = request.query_params.get("idempotency_key")
        return _items(ledger.refunds, key, refund_item)

    async def stats(_: Request) -> Response:
        def summary(records: Mapping[str, KeyRecord]) -> dict[str, dict[str, int]]:
            return {k: {"applied": r.applied, "attempts": r.attempts} for k, r in records.items()}

        return JSONResponse(
            {
                "charges": summary(ledger.charges),
                "refunds": summary(ledger.refunds),
                "last_request_ids": list(ledger.request_ids),
                "faults_injected": dict(ledger.faults.injected),
            }
        )

    async def set_latency(request: Request) -> Response:
        body = await _json_object(request)
        ledger.latency_s = _number_between(body.get("delay_s"), 0, MAX_LATENCY_S)
        logger.info("latency set to %.3fs", ledger.latency_s)
        return JSONResponse({"delay_s": ledger.latency_s})

    async def set_faults(request: Request) -> Response:
        body = await _json_object(request)
        error_rate = _number_between(body.get("error_rate"), 0, 1)
        seed = _optional_int(body.get("seed"))
        ledger.faults.error_rate = error_rate
        ledger.faults.rng = random.Random(seed)  # None: seeded from the OS
        logger.info("fault rate set to %.3f (seed %s)", error_rate, seed)
        return JSONResponse({"error_rate": error_rate, "seed": seed})

    async def reset(_: Request) -> Response:
        ledger.latency_s = 0.0
        ledger.faults = Faults()
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
            Route("/v1/charges", list_charges, methods=["GET"]),
            Route("/v1/refunds", create_refund, methods=["POST"]),
            Route("/v1/refunds", list_refunds, methods=["GET"]),
            Route("/_sandbox/stats", stats, methods=["GET"]),
            Route("/_sandbox/reset", reset, methods=["POST"]),
            Route("/_sandbox/latency", set_latency, methods=["PUT"]),
            Route("/_sandbox/faults", set_faults, methods=["PUT"]),
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
