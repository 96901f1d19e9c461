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

With ``--tls-cert``/``--tls-key`` the sink offers STARTTLS and refuses mail sent without
it; with ``--auth-user``/``--auth-password`` as well, it refuses mail from a client that
has not logged in with those (AUTH PLAIN or LOGIN, only inside TLS). Each message records
what its session was: ``tls`` (true after STARTTLS) and ``auth_login`` (the user, or null).

A held message is stored only when it is released and its sender is still connected: a
sender that dies while stalled never got "250", so nothing was delivered (as with a real
server), which is what a test killing a worker mid-send needs to see.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import sys
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import uvicorn
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
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


def session_facts(session: Session) -> dict[str, Any]:
    """How the message came: inside TLS or not, and as which logged-in user."""
    login = session.auth_data.login if session.authenticated else None
    return {
        "tls": session.ssl is not None,
        "auth_login": login.decode() if isinstance(login, bytes) else None,
    }


class Credentials:
    """aiosmtpd authenticator accepting exactly one user and password."""

    def __init__(self, user: str, password: str) -> None:
        self.expected = LoginPassword(user.encode(), password.encode())

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and auth_data == self.expected:
            return AuthResult(success=True, auth_data=auth_data)
        logger.info("authentication refused mechanism=%s", mechanism)
        return AuthResult(success=False, handled=False)


def server_tls_context(cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


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
        item = parse(envelope) | session_facts(session)
        self.messages.append(item)
        logger.info(
            "received from=%s to=%s subject=%r message_id=%s tls=%s auth_login=%s",
            item["mail_from"],
            ",".join(item["rcpt_tos"]),
            item["subject"],
            item["message_id"],
            item["tls"],
            item["auth_login"],
        )
        # Stored before we answer 250, so a client that got 250 can read it back at once.
        return "250 Message accepted for delivery"


def create_app(
    mailbox: Mailbox,
    host: str,
    smtp_port: int,
    *,
    tls_context: ssl.SSLContext | None = None,
    credentials: Credentials | None = None,
) -> Starlette:
    """The HTTP side; its lifespan owns the SMTP listener. With ``tls_context`` STARTTLS is
    offered and required; with ``credentials`` too, so is logging in."""

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(
                mailbox,
                hostname="smtp-sink",
                enable_SMTPUTF8=True,
                tls_context=tls_context,
                require_starttls=tls_context is not None,
                authenticator=credentials,
                auth_required=credentials is not None,
                loop=loop,
            ),
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
    parser.add_argument("--tls-cert", help="PEM certificate: offer and require STARTTLS")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument("--auth-user", help="require AUTH as this user (needs TLS)")
    parser.add_argument("--auth-password", help="the password of --auth-user")
    args = parser.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if bool(args.auth_user) != bool(args.auth_password):
        parser.error("--auth-user and --auth-password go together")
    if args.auth_user and not args.tls_cert:
        parser.error("--auth-user needs --tls-cert: credentials only travel inside TLS")
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stdout,
    )
    app = create_app(
        Mailbox(),
        args.host,
        args.smtp_port,
        tls_context=server_tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None,
        credentials=Credentials(args.auth_user, args.auth_password) if args.auth_user else None,
    )
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
