"""A real HTTP server in a thread of the test process that records every request it gets:
the receiving end of an outgoing webhook.

What it answers depends on the path: ``/status/<code>`` answers that code, ``/hang``
answers 200 only once ``release()`` is called (or the receiver stops), anything else 200.
A request is recorded as soon as its body is read, before it is answered, so a hanging
one can be inspected while its sender still waits.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HANG_LIMIT_S = 60.0  # a hanging request is answered at the latest after this long


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    received_at: datetime  # once its body was read (wall clock, as in log timestamps)

    def json(self) -> Any:
        return json.loads(self.body)


class HttpReceiver:
    def __init__(self, server: ThreadingHTTPServer) -> None:
        host, port = server.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self._lock = threading.Lock()
        self._received: list[ReceivedRequest] = []
        self._hanging = 0
        self._released = threading.Event()

    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._received)

    def hanging(self) -> int:
        """How many ``/hang`` requests are waiting for their answer right now."""
        with self._lock:
            return self._hanging

    def release(self) -> None:
        self._released.set()

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._received.append(request)

    def _hang(self) -> None:
        with self._lock:
            self._hanging += 1
        try:
            self._released.wait(HANG_LIMIT_S)
        finally:
            with self._lock:
                self._hanging -= 1


def _handler(receiver: HttpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self._receive()

        def do_GET(self) -> None:
            self._receive()

        def _receive(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            receiver._record(
                ReceivedRequest(
                    method=self.command,
                    path=self.path,
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=self.rfile.read(length),
                    received_at=datetime.now(UTC),
                )
            )
            status = 200
            if self.path.startswith("/status/"):
                status = int(self.path.removeprefix("/status/"))
            elif self.path == "/hang":
                receiver._hang()
            # A sender that gave up has closed the connection: nothing to tell it.
            with suppress(OSError):
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test reads requests(), not an access log

    return Handler


@contextmanager
def run_http_receiver() -> Iterator[HttpReceiver]:
    """On a free port of 127.0.0.1; stopped, every hanging request released, on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    receiver = HttpReceiver(server)
    server.RequestHandlerClass = _handler(receiver)
    thread = threading.Thread(target=server.serve_forever, name="http-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release()
        server.shutdown()
        server.server_close()
        thread.join()
