"""A TCP server that accepts every connection and never answers: a dependency that hangs.

Unlike a closed port (connection refused at once), a client connects fine, sends its
request and then waits for an answer that never comes, so only its own timeouts end the
wait. What clients send is read and thrown away (their writes never block), and every
connection stays open until the server stops.
"""

from __future__ import annotations

import selectors
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress


class SilentServer:
    def __init__(self, listener: socket.socket) -> None:
        self._listener = listener
        self.port: int = listener.getsockname()[1]
        self._lock = threading.Lock()
        self._accepted = 0
        self._received = 0
        self._stop = threading.Event()

    @property
    def accepted(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return self._accepted

    @property
    def received(self) -> int:
        """Bytes clients sent so far (all of them unanswered)."""
        with self._lock:
            return self._received

    def url(self, scheme: str, path: str = "") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def _serve(self) -> None:
        connections: list[socket.socket] = []
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            try:
                while not self._stop.is_set():
                    for key, _ in selector.select(timeout=0.05):
                        sock = key.fileobj
                        assert isinstance(sock, socket.socket)
                        if sock is self._listener:
                            connection, _ = self._listener.accept()
                            connection.setblocking(False)
                            connections.append(connection)
                            selector.register(connection, selectors.EVENT_READ)
                            with self._lock:
                                self._accepted += 1
                            continue
                        try:
                            data = sock.recv(65536)
                        except OSError:
                            data = b""
                        if not data:  # the client gave up: forget it
                            selector.unregister(sock)
                            sock.close()
                            connections.remove(sock)
                            continue
                        with self._lock:
                            self._received += len(data)
            finally:
                for connection in connections:
                    with suppress(OSError):
                        connection.close()


@contextmanager
def silent_server() -> Iterator[SilentServer]:
    """On a free port of 127.0.0.1; every connection closed when the block ends."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.setblocking(False)
    server = SilentServer(listener)
    thread = threading.Thread(target=server._serve, name="silent-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server._stop.set()
        thread.join()
        listener.close()
