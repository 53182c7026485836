"""A real HTTP server on 127.0.0.1 that plays the hub's ingest endpoint, for delivery tests.

It stores each event id once (as the hub does), remembers every request, and can be told to
answer the next requests with a failure (``fail_next``), to refuse the API key, to refuse some
events of a batch with 207 (``reject``), or to hang. It also serves the control endpoints an SDK
with an API key reads (``controls``, a :class:`~tests.sdk.fake_controls.ControlsFeed`: an org
with no controls unless a test publishes some), the approval endpoints (``approvals``, a
:class:`~tests.sdk.fake_approvals.ApprovalDesk`) and the budget endpoints (``budgets``, a
:class:`~tests.sdk.fake_budgets.BudgetDesk`, whose ledger is charged with each ingested LLM
span's cost); those requests are not in ``requests``.
Run it in-process (``FakeHub().start()``) or as its own process (``python -m
tests.sdk.fake_hub PORT``) for tests that need it to outlive or predate an SDK process (it then
publishes the budgets each line of its input lists: :func:`serve`).
"""

from __future__ import annotations

import gzip
import json
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.sdk.fake_approvals import ApprovalDesk
from tests.sdk.fake_budgets import BudgetDesk
from tests.sdk.fake_controls import ControlsFeed

INGEST_PATH = "/api/v1/ingest/batch"


class FakeHub:
    """The hub's ingest endpoint with knobs for failure."""

    def __init__(self, port: int = 0, api_key: str | None = None) -> None:
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.events: dict[str, dict[str, Any]] = {}
        self.received = 0
        self.received_ids: Counter[str] = Counter()
        """How many times each event id arrived (the hub stores it once however often)."""
        self.failures: list[tuple[int, dict[str, str], dict[str, Any]]] = []
        self.hang_seconds = 0.0
        self.reject: Callable[[dict[str, Any]], str | None] | None = None
        """Refuse each event this returns a reason for, answering 207 as the hub does."""
        self.controls = ControlsFeed(api_key)
        self.approvals = ApprovalDesk(self.controls, api_key)
        self.budgets = BudgetDesk(self.controls, api_key)
        self._lock = threading.Condition()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if hub.approvals.handles(self.path):
                    hub.approvals.handle(self, "POST")
                elif hub.budgets.handles(self.path):
                    hub.budgets.handle(self, "POST")
                else:
                    hub._handle(self)

            def do_GET(self) -> None:
                if hub.approvals.handles(self.path):
                    hub.approvals.handle(self, "GET")
                elif hub.budgets.handles(self.path):
                    hub.budgets.handle(self, "GET")
                else:
                    hub.controls.handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def start(self) -> FakeHub:
        # A short poll interval: stop() waits for the serving loop to notice.
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.controls.close()
        self.server.shutdown()
        self.server.server_close()

    def fail_next(
        self,
        count: int,
        status: int = 503,
        headers: dict[str, str] | None = None,
        problem: dict[str, Any] | None = None,
    ) -> None:
        """Answer the next ``count`` requests with ``status`` (and ``headers``, ``problem``)."""
        problem = problem or {"code": "unavailable", "detail": "try later"}
        with self._lock:
            self.failures.extend([(status, headers or {}, problem)] * count)

    def wait_for(self, predicate: Callable[[FakeHub], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate(hub)`` holds or ``timeout`` passes; return whether it held."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(remaining)
            return True

    def spans(self) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events.values() if e["type"] == "span"]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
        if self.hang_seconds:
            time.sleep(self.hang_seconds)
        with self._lock:
            record: dict[str, Any] = {
                "path": handler.path,
                "headers": dict(handler.headers.items()),
                "size": len(body),
                "body": body,
                "at": time.monotonic(),
            }
            self.requests.append(record)
            failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            status, headers, problem = failure
            self._reply(handler, status, problem, headers)
            return
        expected = f"Bearer {self.api_key}"
        if self.api_key is not None and handler.headers.get("Authorization") != expected:
            self._reply(handler, 401, {"code": "invalid_api_key", "detail": "API key revoked"})
            return
        if handler.path != INGEST_PATH:
            self._reply(handler, 404, {"code": "not_found", "detail": handler.path})
            return
        if handler.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        batch = json.loads(body)
        with self._lock:
            record["batch"] = batch
            duplicates = 0
            errors: list[dict[str, Any]] = []
            for index, event in enumerate(batch["events"]):
                reason = self.reject(event) if self.reject is not None else None
                if reason is not None:
                    errors.append(
                        {
                            "index": index,
                            "id": event["id"],
                            "code": "validation_error",
                            "detail": reason,
                        }
                    )
                    continue
                self.received += 1
                self.received_ids[event["id"]] += 1
                if event["type"] == "span" and event["id"] in self.events:
                    duplicates += 1
                elif event["type"] == "span":
                    self.budgets.charge(event)
                self.events[event["id"]] = event
            self._lock.notify_all()
        accepted = len(batch["events"]) - duplicates - len(errors)
        answer = {
            "accepted": accepted,
            "duplicates": duplicates,
            "rejected": len(errors),
            "errors": errors,
        }
        self._reply(handler, 207 if errors else 200, answer)

    def _reply(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        payload = json.dumps(body).encode()
        handler.send_response(status)
        kind = "application/problem+json" if status >= 400 else "application/json"
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(payload)
        with self._lock:
            self._lock.notify_all()


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (for a hub that is down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def serve(port: int) -> None:
    """Serve on ``port`` and print the URL; then each line read is a JSON list of budgets
    (``[limit, name]`` pairs) to publish, answered with a line of their ids (a benchmark's hub
    in its own process)."""
    from tests.sdk.fake_budgets import budget

    hub = FakeHub(port).start()
    print(hub.url, flush=True)
    for line in sys.stdin:
        published = [budget(limit, name=name) for limit, name in json.loads(line)]
        hub.budgets.publish(published)
        print(json.dumps([str(b.id) for b in published]), flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
