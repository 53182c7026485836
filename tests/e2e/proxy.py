"""A real HTTP proxy on 127.0.0.1 between an SDK process and a hub process, for delivery tests.

It forwards every request to the hub and relays the answer, and it can be told, while the
processes run, to slow every request down (a slow hub), or to answer every request itself with
a status such as 429 or 503 (and a ``Retry-After``) without asking the hub. It counts the events
of every ingest batch the hub acknowledged (2xx), so a test knows exactly what was delivered;
a slowed request whose client has given up by then is not forwarded.

    with Proxy(hub.url) as proxy:
        proxy.refuse(429, retry_after=1)
        ...
        proxy.forward()
        assert proxy.acknowledged == stored
"""

from __future__ import annotations

import gzip
import json
import select
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import httpx

_RELAYED_HEADERS = ("content-type", "retry-after", "ratelimit-limit", "ratelimit-remaining")


class Proxy:
    """Forwards to ``upstream``; see the module docstring."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.delay = 0.0
        self.acknowledged = 0
        """Events in ingest batches the hub answered with 2xx."""
        self.acknowledged_ids: Counter[str] = Counter()
        self.refused = 0
        """Requests answered by the proxy itself."""
        self._refusal: tuple[int, dict[str, str]] | None = None
        self._lock = threading.Lock()
        self._http = httpx.Client(timeout=60)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                proxy._handle(self)

            def do_GET(self) -> None:
                proxy._handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> Proxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._http.close()

    def refuse(self, status: int, retry_after: int | None = None) -> None:
        """Answer every request with ``status`` (and ``Retry-After``) until :meth:`forward`."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        with self._lock:
            self._refusal = (status, headers)

    def forward(self) -> None:
        """Forward every request to the hub again."""
        with self._lock:
            self._refusal = None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            refusal = self._refusal
        if refusal is not None:
            with self._lock:
                self.refused += 1
            status, headers = refusal
            problem = {"type": "about:blank", "status": status, "code": "refused_by_proxy"}
            self._reply(handler, status, json.dumps(problem).encode(), headers)
            return
        if self.delay:
            time.sleep(self.delay)  # the slow hub this proxy plays
            if _gone(handler):
                return  # the SDK gave up waiting (its deadline): the hub never sees the request
        headers = {
            name: value
            for name, value in handler.headers.items()
            if name.lower() not in {"host", "content-length", "connection"}
        }
        try:
            answer = self._http.request(
                handler.command, self.upstream + handler.path, content=body, headers=headers
            )
        except httpx.TransportError:
            self._reply(handler, 502, b'{"code": "bad_gateway"}', {})
            return
        if answer.is_success and handler.command == "POST" and "/ingest/" in handler.path:
            gzipped = handler.headers.get("Content-Encoding") == "gzip"
            raw = gzip.decompress(body) if gzipped else body
            ids = [event["id"] for event in json.loads(raw)["events"]]
            with self._lock:
                self.acknowledged += len(ids)
                self.acknowledged_ids.update(ids)
        relayed = {k: v for k, v in answer.headers.items() if k.lower() in _RELAYED_HEADERS}
        self._reply(handler, answer.status_code, answer.content, relayed)

    def _reply(
        self, handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]
    ) -> None:
        try:
            handler.send_response(status)
            if not any(name.lower() == "content-type" for name in headers):
                handler.send_header("Content-Type", "application/problem+json")
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the SDK gave up waiting (its own timeout); nothing to relay to


def _gone(handler: BaseHTTPRequestHandler) -> bool:
    """Whether the client closed its connection (readable, with nothing left to read)."""
    connection: socket.socket = handler.connection
    readable, _, _ = select.select([connection], [], [], 0)
    if not readable:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True
