"""The hub's approval endpoints, played over real HTTP for the SDK's approval stage.

- ``POST /api/v1/approvals`` (an ``ApprovalAsk``): ``201`` with a new pending
  ``ApprovalRequest``, or ``200`` with the one its key has already.
- ``GET /api/v1/approvals/{id}``: the request; a pending one past ``expires_at`` reads as
  ``expired``.
- ``POST /api/v1/approvals/{id}/claim`` (an ``ApprovalClaim``): ``200`` for the first claim of an
  approved request, ``409`` ``approval_claimed`` for any later one (``409``
  ``approval_not_approved`` for a request that is not approved).

A reviewer's :meth:`ApprovalDesk.decide` pushes an ``approvals`` event (an ``ApprovalFeed`` of
the requests decided so far, newest first) on the stream of the
:class:`~tests.sdk.fake_controls.ControlsFeed` it is given. Knobs: ``down`` answers every request
with ``503``; ``push`` off decides without an event (the SDK must poll). Kept for assertions:
``asks`` (each ask with the status answered), ``reads`` and ``claims``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any

from agentops_sdk.contract.approvals import (
    ApprovalAsk,
    ApprovalClaim,
    ApprovalFeed,
    ApprovalRequest,
)
from tests.sdk.fake_controls import ControlsFeed

APPROVALS_PATH = "/api/v1/approvals"


class ApprovalDesk:
    """One org's approval requests, kept by key, as the hub keeps them."""

    def __init__(self, feed: ControlsFeed, api_key: str | None = None) -> None:
        self.feed = feed
        self.api_key = api_key
        self.requests: dict[uuid.UUID, ApprovalRequest] = {}
        self.asks: list[tuple[ApprovalAsk, int]] = []
        self.reads = 0
        self.claims: list[tuple[uuid.UUID, str, int]] = []
        """Each claim: the request, the claimant, the status answered."""
        self.down = False
        self.push = True
        self._decided: list[uuid.UUID] = []
        self._changed = threading.Condition()

    # -- the reviewer's side ----------------------------------------------------------------------

    def decide(
        self,
        request_id: uuid.UUID,
        decision: str,
        *,
        comment: str | None = None,
        edited_arguments: dict[str, Any] | None = None,
        by: str = "reviewer@example.com",
    ) -> ApprovalRequest:
        """Answer a pending request (``approve``, ``reject``, ``cancel``) and push the news."""
        state = {"approve": "approved", "reject": "rejected", "cancel": "cancelled"}[decision]
        if decision == "approve" and edited_arguments is not None:
            state = "approved_with_edits"
        with self._changed:
            request = self._current(request_id)
            assert request.state == "pending", request.state
            decided = request.model_copy(
                update={
                    "state": state,
                    "decided_at": datetime.now(UTC),
                    "decided_by": by,
                    "comment": comment,
                    "edited_arguments": edited_arguments,
                }
            )
            self.requests[request_id] = decided
            self._decided.insert(0, request_id)
            if self.push:
                self._publish()
            self._changed.notify_all()
        return decided

    def pending(self) -> list[ApprovalRequest]:
        with self._changed:
            return [r for r in self.requests.values() if r.state == "pending"]

    def wait_for(self, predicate: Callable[[ApprovalDesk], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate(desk)`` holds or ``timeout`` passes; return whether it held."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def one_pending(self, timeout: float = 10.0) -> ApprovalRequest:
        """The one pending request, once there is one."""
        assert self.wait_for(lambda desk: len(desk.pending()) == 1, timeout), self.requests
        return self.pending()[0]

    # -- serving --------------------------------------------------------------------------------

    def handles(self, path: str) -> bool:
        return path == APPROVALS_PATH or path.startswith(APPROVALS_PATH + "/")

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        """Answer a request under ``/api/v1/approvals``."""
        length = int(handler.headers.get("Content-Length", 0))
        body = handler.rfile.read(length) if length else b""
        if self.down:
            _answer(handler, 503, {"code": "unavailable", "detail": "the hub is down"})
            return
        if self.api_key is not None and handler.headers.get("Authorization") != (
            f"Bearer {self.api_key}"
        ):
            _answer(handler, 401, {"code": "invalid_api_key", "detail": "bad key"})
            return
        parts = handler.path.rstrip("/").split("/")[4:]  # after /api/v1/approvals
        if method == "POST" and not parts:
            self._ask(handler, ApprovalAsk.model_validate_json(body))
        elif method == "GET" and len(parts) == 1:
            self._read(handler, uuid.UUID(parts[0]))
        elif method == "POST" and len(parts) == 2 and parts[1] == "claim":
            self._claim(handler, uuid.UUID(parts[0]), ApprovalClaim.model_validate_json(body))
        else:
            _answer(handler, 404, {"code": "not_found", "detail": handler.path})

    def _ask(self, handler: BaseHTTPRequestHandler, ask: ApprovalAsk) -> None:
        with self._changed:
            existing = next((r for r in self.requests.values() if r.key == ask.key), None)
            if existing is not None:
                request, status = self._current(existing.id), 200
            else:
                now = datetime.now(UTC)
                fields = ask.model_dump(exclude={"expires_in", "escalate_after"})
                fields.pop("allow_self_approval")
                request = ApprovalRequest(
                    id=uuid.uuid4(),
                    state="pending",
                    created_at=now,
                    expires_at=now + timedelta(seconds=ask.expires_in),
                    **fields,
                )
                self.requests[request.id] = request
                status = 201
            self.asks.append((ask, status))
            self._changed.notify_all()
        _answer(handler, status, request.model_dump(mode="json"))

    def _read(self, handler: BaseHTTPRequestHandler, request_id: uuid.UUID) -> None:
        with self._changed:
            self.reads += 1
            request = self.requests.get(request_id)
            current = None if request is None else self._current(request_id)
            self._changed.notify_all()
        if current is None:
            _answer(handler, 404, {"code": "not_found", "detail": "no such request"})
        else:
            _answer(handler, 200, current.model_dump(mode="json"))

    def _claim(
        self, handler: BaseHTTPRequestHandler, request_id: uuid.UUID, claim: ApprovalClaim
    ) -> None:
        with self._changed:
            request = self._current(request_id)
            if request.state not in ("approved", "approved_with_edits"):
                status, answer = 409, {"code": "approval_not_approved", "detail": request.state}
            elif request.claimed_at is not None:
                status, answer = 409, {"code": "approval_claimed", "detail": "claimed already"}
            else:
                request = request.model_copy(
                    update={"claimed_at": datetime.now(UTC), "claimed_by": claim.claimant}
                )
                self.requests[request_id] = request
                status, answer = 200, request.model_dump(mode="json")
            self.claims.append((request_id, claim.claimant, status))
            self._changed.notify_all()
        _answer(handler, status, answer)

    def _current(self, request_id: uuid.UUID) -> ApprovalRequest:
        """The request as read now: a pending one past its expiry is expired (caller locks)."""
        request = self.requests[request_id]
        if request.state == "pending" and datetime.now(UTC) >= request.expires_at:
            request = request.model_copy(
                update={
                    "state": "expired",
                    "decided_at": request.expires_at,
                    "decided_by": "system",
                }
            )
            self.requests[request_id] = request
        return request

    def _publish(self) -> None:
        decided = tuple(self.requests[i] for i in self._decided)
        feed = ApprovalFeed(version=str(len(decided)), requests=decided)
        self.feed.send("approvals", json.loads(feed.model_dump_json()))


def _answer(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    handler.send_response(status)
    kind = "application/problem+json" if status >= 400 else "application/json"
    handler.send_header("Content-Type", kind)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)
