"""The hub's control and policy endpoints, played over real HTTP for the SDK's hub link.

- ``GET /api/v1/controls``: the org's ``ControlSet`` with its ``ETag``; 304 for a matching
  ``If-None-Match``.
- ``GET /api/v1/policies/effective``: the org's ``EffectivePolicy`` likewise (no active set
  until a test publishes one with :meth:`ControlsFeed.publish_policies`).
- ``GET /api/v1/stream``: Server-Sent Events, each with a kind, an id and JSON data. A new
  connection gets the current ``controls`` event first, or, resuming with a ``Last-Event-ID``
  still in the backlog, every event after it; then each event as it is published, and a
  ``heartbeat`` (carrying the latest id) after ``heartbeat`` seconds of quiet.

:func:`control` and :func:`control_set` build what it serves. Knobs: ``stream_status`` and
``poll_status`` answer with an error instead, ``cut()`` ends every open stream (the client must
reconnect), ``send()`` publishes any kind of event. What clients asked is kept: ``connections``
(the ``Last-Event-ID`` of each stream opened), ``polls`` (``If-None-Match`` and the status
answered; ``policy_polls`` for the policies) and ``refused`` (requests with another API key).
A new connection also gets the current ``policies`` event (the org's effective set, version 0
with no active set until one is published), and the current state of every topic in ``topics``
(added by other fakes: the budgets), as the hub sends every topic to a new stream.
:class:`~tests.sdk.fake_hub.FakeHub` serves it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from agentops_sdk.contract.controls import (
    AgentProfile,
    Control,
    ControlScope,
    ControlSet,
    ControlState,
    ScopeKind,
)
from agentops_sdk.contract.policy import EffectivePolicy

STREAM_PATH = "/api/v1/stream"
CONTROLS_PATH = "/api/v1/controls"
POLICIES_PATH = "/api/v1/policies/effective"
ORG = uuid.UUID("0192f5a0-7c1e-7d3a-9b2e-5f0c1d2e3f40")
"""The org of the sets :func:`control_set` makes."""


def empty_set(org_id: uuid.UUID | None = None) -> ControlSet:
    """An org's control set with nothing in it, as a new org's hub serves it."""
    return ControlSet(org_id=org_id or uuid.uuid4(), version=0, generated_at=datetime.now(UTC))


def control(
    state: ControlState,
    kind: ScopeKind = "org",
    value: str | None = None,
    *,
    reason: str = "incident 42",
    actor: str = "ops@example.com",
    expires_at: datetime | None = None,
    pause_timeout: float = 0.0,
    updated_at: datetime | None = None,
) -> Control:
    """A control as the hub sends it, set now unless ``updated_at`` says when."""
    moment = updated_at or datetime.now(UTC)
    return Control(
        id=uuid.uuid4(),
        scope=ControlScope(kind=kind, value=value),
        state=state,
        reason=reason,
        actor=actor,
        version=1,
        created_at=moment,
        updated_at=moment,
        expires_at=expires_at,
        pause_timeout=pause_timeout,
    )


def control_set(
    *controls: Control,
    agents: tuple[AgentProfile, ...] = (),
    version: int = 1,
    org_id: uuid.UUID = ORG,
) -> ControlSet:
    """One org's set of ``controls`` (and agent profiles), at ``version``."""
    return ControlSet(
        org_id=org_id,
        version=version,
        controls=controls,
        agents=agents,
        generated_at=datetime.now(UTC),
    )


class ControlsFeed:
    """The control endpoints of one org's hub, for one API key (None: any key)."""

    def __init__(self, api_key: str | None = None, heartbeat: float = 15.0) -> None:
        self.api_key = api_key
        self.heartbeat = heartbeat
        self.current = empty_set()
        self.events: list[tuple[int, str, str]] = [(1, "controls", self.current.model_dump_json())]
        """Every event published: id, kind, data."""
        self.policies = EffectivePolicy(org_id=ORG, version=0)
        self.stream_status: int | None = None
        self.poll_status: int | None = None
        self.connections: list[str | None] = []
        self.open_streams = 0
        self.polls: list[tuple[str | None, int]] = []
        self.policy_polls: list[tuple[str | None, int]] = []
        self.refused: list[str] = []
        """The path of each request refused for its API key."""
        self.topics: dict[str, Callable[[], str]] = {}
        """More topics a new stream gets the current state of (kind: its JSON now)."""
        self._changed = threading.Condition()
        self._generation = 0
        self._closed = False

    # -- the knobs ------------------------------------------------------------------------------

    def publish(self, controls: ControlSet) -> None:
        """Make ``controls`` the org's set and push it to every open stream."""
        with self._changed:
            self.current = controls
            self._append("controls", controls.model_dump_json())

    def publish_policies(self, effective: EffectivePolicy) -> None:
        """Make ``effective`` the org's effective policy set and push it to every open stream."""
        with self._changed:
            self.policies = effective
            self._append("policies", effective.to_json())

    def send(self, kind: str, data: Any = None) -> None:
        """Push an event of any ``kind`` (``resync``, a kind from a later issue...)."""
        with self._changed:
            self._append(kind, json.dumps(data if data is not None else {}))

    def cut(self) -> None:
        """End every open stream, as a hub restart or a proxy timeout would."""
        with self._changed:
            self._generation += 1
            self._changed.notify_all()

    def close(self) -> None:
        """End every open stream for good (the hub is stopping)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def wait_for(self, predicate: Callable[[ControlsFeed], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate(feed)`` holds or ``timeout`` passes; return whether it held."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    # -- serving --------------------------------------------------------------------------------

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        """Answer a GET request (FakeHub's ``do_GET``)."""
        path = urlsplit(handler.path).path
        expected = f"Bearer {self.api_key}"
        if self.api_key is not None and handler.headers.get("Authorization") != expected:
            with self._changed:
                self.refused.append(path)
                self._changed.notify_all()
            _problem(handler, 401, "invalid_api_key")
        elif path == CONTROLS_PATH:
            with self._changed:
                current = self.current
            self._poll(handler, current.model_dump_json(), current.etag, self.polls)
        elif path == POLICIES_PATH:
            with self._changed:
                effective = self.policies
            self._poll(handler, effective.to_json(), effective.etag, self.policy_polls)
        elif path == STREAM_PATH:
            self._stream(handler)
        else:
            _problem(handler, 404, "not_found")

    def _poll(
        self,
        handler: BaseHTTPRequestHandler,
        current: str,
        etag: str,
        polls: list[tuple[str | None, int]],
    ) -> None:
        asked = handler.headers.get("If-None-Match")
        with self._changed:
            status = self.poll_status
        if status is None:
            status = 304 if asked == etag else 200
        with self._changed:
            polls.append((asked, status))
            self._changed.notify_all()
        if status >= 400:
            _problem(handler, status, "unavailable")
            return
        body = b"" if status == 304 else current.encode()
        handler.send_response(status)
        handler.send_header("ETag", etag)
        if body:
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _stream(self, handler: BaseHTTPRequestHandler) -> None:
        resume = handler.headers.get("Last-Event-ID")
        with self._changed:
            self.connections.append(resume)
            self._changed.notify_all()
            status = self.stream_status
            generation = self._generation
            ids = [event[0] for event in self.events]
            if resume is not None and resume.isdigit() and int(resume) in ids:
                position = ids.index(int(resume)) + 1
                pending = self.events[position:]
            else:
                position = len(self.events)
                latest = next(e for e in reversed(self.events) if e[1] == "controls")
                pending = [(latest[0], "controls", self.current.model_dump_json())]
                pending.append((self.events[-1][0], "policies", self.policies.to_json()))
                pending.extend(
                    (self.events[-1][0], kind, now()) for kind, now in self.topics.items()
                )
        if status is not None:
            _problem(handler, status, "unavailable")
            return
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-store")
        handler.end_headers()
        with self._changed:
            self.open_streams += 1
            self._changed.notify_all()
        try:
            while True:
                for number, kind, data in pending:
                    handler.wfile.write(f"event: {kind}\nid: {number}\ndata: {data}\n\n".encode())
                handler.wfile.flush()
                with self._changed:
                    quiet_until = time.monotonic() + self.heartbeat
                    while len(self.events) == position and self._live(generation):
                        remaining = quiet_until - time.monotonic()
                        if remaining <= 0:
                            break
                        self._changed.wait(remaining)
                    if not self._live(generation):
                        return
                    pending = self.events[position:]
                    position = len(self.events)
                    if not pending:
                        pending = [(self.events[-1][0], "heartbeat", "{}")]
        except (BrokenPipeError, ConnectionResetError):
            return
        finally:
            with self._changed:
                self.open_streams -= 1
                self._changed.notify_all()

    def _live(self, generation: int) -> bool:
        return not self._closed and generation == self._generation

    def _append(self, kind: str, data: str) -> None:
        self.events.append((self.events[-1][0] + 1, kind, data))
        self._changed.notify_all()


def _problem(handler: BaseHTTPRequestHandler, status: int, code: str) -> None:
    payload = json.dumps({"code": code, "detail": f"HTTP {status}"}).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/problem+json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)
