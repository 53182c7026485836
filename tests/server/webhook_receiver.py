"""A real HTTP server on 127.0.0.1 that receives webhook deliveries, answering each with the
next status of a script (the last one repeats), and keeps what it received::

    with receiving([500, 200]) as receiver:
        ...  # a webhook at receiver.url
        [first, second] = receiver.wait_for(2)
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclasses.dataclass(frozen=True)
class Delivered:
    """One request as the receiver got it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    """What the server received, and how it answers."""

    def __init__(self, statuses: Sequence[int], port: int) -> None:
        self.statuses = list(statuses)
        self.received: list[Delivered] = []
        self.url = f"http://127.0.0.1:{port}/hooks/agentops"
        self.port = port
        self._lock = threading.Lock()

    def answer(self, delivered: Delivered) -> int:
        with self._lock:
            self.received.append(delivered)
            return self.statuses[min(len(self.received), len(self.statuses)) - 1]

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Delivered]:
        """The first ``count`` requests; fails if they do not all arrive within ``timeout``."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"the receiver got {len(self.received)} requests, not {count}")
            time.sleep(0.01)
        return self.received[:count]


@contextmanager
def receiving(statuses: Sequence[int] = (200,)) -> Iterator[Receiver]:
    """A receiver served on a free port of 127.0.0.1 for the block."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = receiver.answer(
                Delivered(self.path, dict(self.headers.items()), body, time.monotonic())
            )
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver = Receiver(statuses, server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
