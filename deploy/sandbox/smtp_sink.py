"""A local SMTP server that keeps what it receives, with an HTTP API to read it back.

`make run` points the app's mail at it, and the tests assert on the messages it holds.
SMTP (aiosmtpd) and HTTP (Starlette under uvicorn) share one event loop: the SMTP listener
is opened and closed by the HTTP app's lifespan, so `/healthz` answering means both are up.

    GET    /messages[?to=addr]   what was received, oldest first (envelope recipients)
    DELETE /messages             forget everything
    POST   /holds {"to": addr}   stall mail to addr: its DATA gets no answer until released
    GET    /holds                {"to": [held addresses], "waiting": [recipients stalled now]}
    DELETE /holds                release: stalled messages are accepted, none is held anymore
    GET    /healthz

A held message is stored only when it is released and its sender is still connected: a
sender that dies while stalled never got "250", so nothing was delivered (as with a real
server), which is what a test killing a worker mid-send needs to see.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import uvicorn
from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

logger = logging.getLogger("sandbox.smtp")

MAX_MESSAGES = 10_000


def _body(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body(preferencelist=(subtype,))
    if part is None:
        return None
    content = part.get_content()
    return content if isinstance(content, str) else None


def _header(message: EmailMessage, name: str) -> str | None:
    value = message.get(name)
    return None if value is None else str(value)


def parse(envelope: Envelope) -> dict[str, Any]:
    """Turn an SMTP transaction into the JSON the tests read."""
    # SMTP carries CRLF line ends; back to "\n" so bodies read as the sender wrote them.
    raw = (envelope.original_content or b"").replace(b"\r\n", b"\n")
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)  # policy.default always builds EmailMessage
    headers: dict[str, str] = {}
    for name, value in message.items():
        headers.setdefault(name, str(value))  # a repeated header keeps its first value
    return {
        "mail_from": envelope.mail_from,
        "rcpt_tos": list(envelope.rcpt_tos),
        "subject": _header(message, "Subject"),
        "message_id": _header(message, "Message-ID"),
        "headers": headers,
        "text": _body(message, "plain"),
        "html": _body(message, "html"),
        "received_at": datetime.now(UTC).isoformat(),
    }


class Mailbox:
    """aiosmtpd handler that stores every message; the oldest go first past the cap."""

    def __init__(self) -> None:
        self.messages: deque[dict[str, Any]] = deque(maxlen=MAX_MESSAGES)
        self.held: set[str] = set()
        self.waiting: list[str] = []
        self._released = asyncio.Event()

    def hold(self, address: str) -> None:
        self.held.add(address.lower())

    def release(self) -> None:
        self.held.clear()
        self._released.set()
        self._released = asyncio.Event()  # for the next hold

    async def _stall(self, envelope: Envelope) -> None:
        recipients = [r.lower() for r in envelope.rcpt_tos if r.lower() in self.held]
        if not recipients:
            return
        self.waiting.extend(recipients)
        logger.info("holding message to=%s", ",".join(recipients))
        try:
            # Cancelled by aiosmtpd when the sender disconnects: nothing is stored then.
            await self._released.wait()
        finally:
            for recipient in recipients:
                self.waiting.remove(recipient)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await self._stall(envelope)
        item = parse(envelope)
        self.messages.append(item)
        logger.info(
            "received from=%s to=%s subject=%r message_id=%s",
            item["mail_from"],
            ",".join(item["rcpt_tos"]),
            item["subject"],
            item["message_id"],
        )
        # Stored before we answer 250, so a client that got 250 can read it back at once.
        return "250 Message accepted for delivery"


def create_app(mailbox: Mailbox, host: str, smtp_port: int) -> Starlette:
    """The HTTP side; its lifespan owns the SMTP listener."""

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(mailbox, hostname="smtp-sink", enable_SMTPUTF8=True, loop=loop),
            host,
            smtp_port,
        )
        logger.info("SMTP listening on %s:%d", host, smtp_port)
        try:
            yield
        finally:
            server.close()
            await server.wait_closed()

    async def list_messages(request: Request) -> Response:
        to = request.query_params.get("to", "").strip().lower()
        items = [m for m in mailbox.messages if not to or to in (r.lower() for r in m["rcpt_tos"])]
        return JSONResponse({"items": items})

    async def clear_messages(_: Request) -> Response:
        mailbox.messages.clear()
        return Response(status_code=204)

    async def add_hold(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        to = body.get("to") if isinstance(body, dict) else None
        if not isinstance(to, str) or "@" not in to:
            return JSONResponse({"error": "bad_request"}, status_code=400)
        mailbox.hold(to)
        return Response(status_code=204)

    async def list_holds(_: Request) -> Response:
        return JSONResponse({"to": sorted(mailbox.held), "waiting": list(mailbox.waiting)})

    async def release_holds(_: Request) -> Response:
        mailbox.release()
        return Response(status_code=204)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/messages", list_messages, methods=["GET"]),
            Route("/messages", clear_messages, methods=["DELETE"]),
            Route("/holds", add_hold, methods=["POST"]),
            Route("/holds", list_holds, methods=["GET"]),
            Route("/holds", release_holds, methods=["DELETE"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, default=8025)
    parser.add_argument("--http-port", type=int, default=8026)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stdout,
    )
    app = create_app(Mailbox(), args.host, args.smtp_port)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.http_port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=1,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
