"""The hub's budget endpoints, played over real HTTP for the SDK's budget stage.

It keeps the lease accounting of :mod:`agentops_sdk.contract.budgets` (the spec):

- ``GET /api/v1/budgets/effective``: the org's ``BudgetSet`` with its ``ETag`` (304 when it
  matches); :meth:`BudgetDesk.publish` also pushes a ``budgets`` event on the stream, and a new
  stream gets the current set.
- ``POST /api/v1/budgets/{id}/leases`` (a ``LeaseAsk``): ``201`` with a new lease of at most
  what the budget has left (its limit less its spend and what every lease holds back), under
  one lock, so two asks never grant the same dollars; the same ``request_id`` answers the same
  lease (``200``); nothing left: ``409 budget_exhausted``.
- ``POST /api/v1/budgets/leases/{id}/report`` (a ``LeaseReport``): records the spend, renews,
  grants ``more_usd`` as far as the budget has room (possibly nothing: ``granted_usd`` says)
  or releases.

A lease past ``expires_at`` reads as ``expired`` (computed when read: nothing sweeps). The
ledger is what :meth:`charge` is given: each ingested LLM span's cost, against the leases it
names (:class:`~tests.sdk.fake_hub.FakeHub` calls it). What a live lease holds back is its grant
less what the ledger charged to it; a released or expired one holds back what its holder
reported spending and the ledger has not charged yet. A budget limiting tokens is kept the same
way in tokens (``tokens`` asked, ``more_tokens``, ``spent_tokens``; the ledger charges a span's
input and output tokens). ``peak`` (``peak_tokens``) is the most ever committed (spent and
held back) per budget; ``down`` answers every lease request with ``503``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from agentops_sdk.contract.budgets import (
    LEASES_ATTRIBUTE,
    Budget,
    BudgetSet,
    Lease,
    LeaseAsk,
    LeaseReport,
    OrgModelPrice,
    window_of,
)
from agentops_sdk.contract.controls import ControlScope
from tests.sdk.fake_controls import ORG, ControlsFeed

BUDGETS_PATH = "/api/v1/budgets"
EFFECTIVE_PATH = BUDGETS_PATH + "/effective"


def budget(
    limit: str | Decimal,
    *,
    name: str = "monthly",
    scope: tuple[str, str | None] = ("org", None),
    **fields: Any,
) -> Budget:
    """A budget of ``limit`` USD (``total`` unless ``period`` is given)."""
    kind, value = scope
    return Budget(
        id=fields.pop("id", None) or uuid.uuid4(),
        name=name,
        scope=ControlScope(kind=kind, value=value),  # type: ignore[arg-type]
        limit_usd=Decimal(limit),
        period=fields.pop("period", "total"),
        **fields,
    )


@dataclasses.dataclass
class _Held:
    lease: Lease
    charged: Decimal = Decimal(0)
    charged_tokens: int = 0
    spent_tokens: int = 0
    """The most tokens its holder reported spending."""


class BudgetDesk:
    """One org's budgets and leases, kept as the hub keeps them."""

    def __init__(self, feed: ControlsFeed, api_key: str | None = None) -> None:
        self.feed = feed
        self.api_key = api_key
        self.current = BudgetSet(org_id=ORG, version=0, generated_at=datetime.now(UTC))
        self.leases: dict[uuid.UUID, _Held] = {}
        self.spent: dict[uuid.UUID, Decimal] = {}
        """The ledger: each budget's charged spend."""
        self.spent_tokens: dict[uuid.UUID, int] = {}
        """The same in tokens (input and output) of the calls charged."""
        self.peak: dict[uuid.UUID, Decimal] = {}
        self.peak_tokens: dict[uuid.UUID, int] = {}
        self.asks: list[tuple[LeaseAsk, int]] = []
        self.reports: list[tuple[uuid.UUID, LeaseReport, int]] = []
        self.polls = 0
        self.down = False
        self.answering = threading.Event()
        """Cleared: a lease asked for is answered only once it is set again (a slow hub)."""
        self.answering.set()
        self._lock = threading.Condition()
        feed.topics["budgets"] = self._current_json

    def _current_json(self) -> str:
        with self._lock:
            return self.current.model_dump_json()

    # -- the org's side -------------------------------------------------------------------------

    def publish(self, budgets: Iterable[Budget], prices: Iterable[OrgModelPrice] = ()) -> BudgetSet:
        """Make ``budgets`` the org's budgets (and ``prices`` its own prices) and push them on
        the stream."""
        with self._lock:
            self.current = BudgetSet(
                org_id=ORG,
                version=self.current.version + 1,
                budgets=tuple(budgets),
                prices=tuple(prices),
                generated_at=datetime.now(UTC),
            )
            data = json.loads(self.current.model_dump_json())
        self.feed.send("budgets", data)
        return self.current

    def charge(self, span: dict[str, Any]) -> None:
        """The ledger takes an ingested span: its cost, against the leases it names."""
        names = (span.get("attributes") or {}).get(LEASES_ATTRIBUTE)
        llm = span.get("llm") or {}
        cost = llm.get("cost")
        if not names or cost is None:
            return
        tokens = (llm.get("input_tokens") or 0) + (llm.get("output_tokens") or 0)
        with self._lock:
            for name in names:
                held = self.leases.get(uuid.UUID(name))
                if held is None:
                    continue
                held.charged += Decimal(str(cost))
                budget_id = held.lease.budget_id
                self.spent[budget_id] = self.spent.get(budget_id, Decimal(0)) + Decimal(str(cost))
                if held.lease.granted_tokens is not None:
                    held.charged_tokens += tokens
                    self.spent_tokens[budget_id] = self.spent_tokens.get(budget_id, 0) + tokens
            self._lock.notify_all()

    def committed(self, budget_id: uuid.UUID) -> Decimal:
        """Spent and held back now."""
        with self._lock:
            return self.spent.get(budget_id, Decimal(0)) + self._held_back(budget_id)

    def committed_tokens(self, budget_id: uuid.UUID) -> int:
        """Tokens spent and held back now."""
        with self._lock:
            return self.spent_tokens.get(budget_id, 0) + self._held_back_tokens(budget_id)

    def live(self, budget_id: uuid.UUID) -> list[Lease]:
        with self._lock:
            return [
                self._read(held).lease
                for held in list(self.leases.values())
                if held.lease.budget_id == budget_id and self._read(held).lease.state == "active"
            ]

    def wait_for(self, predicate: Callable[[BudgetDesk], bool], timeout: float = 10.0) -> bool:
        """Wait until ``predicate(desk)`` holds or ``timeout`` passes; return whether it held."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.05))  # expiry is computed when read
            return True

    # -- serving --------------------------------------------------------------------------------

    def handles(self, path: str) -> bool:
        return urlsplit(path).path.startswith(BUDGETS_PATH + "/")

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        """Answer a request under ``/api/v1/budgets``."""
        length = int(handler.headers.get("Content-Length", 0))
        body = handler.rfile.read(length) if length else b""
        path = urlsplit(handler.path).path
        if self.api_key is not None and handler.headers.get("Authorization") != (
            f"Bearer {self.api_key}"
        ):
            _answer(handler, 401, {"code": "invalid_api_key", "detail": "bad key"})
            return
        if method == "GET" and path == EFFECTIVE_PATH:
            self._effective(handler)
            return
        if self.down:
            _answer(handler, 503, {"code": "unavailable", "detail": "the hub is down"})
            return
        parts = path.split("/")[4:]  # after /api/v1/budgets
        if method == "POST" and len(parts) == 2 and parts[1] == "leases":
            self.answering.wait(30)
            status, answer = self._ask(uuid.UUID(parts[0]), LeaseAsk.model_validate_json(body))
        elif method == "POST" and len(parts) == 3 and parts[0] == "leases":
            report = LeaseReport.model_validate_json(body)
            status, answer = self._report(uuid.UUID(parts[1]), report)
        else:
            status, answer = 404, {"code": "not_found", "detail": path}
        _answer(handler, status, answer)

    def _effective(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            current = self.current
            self.polls += 1
        etag = current.etag
        matched = handler.headers.get("If-None-Match") == etag
        body = b"" if matched else current.model_dump_json().encode()
        handler.send_response(304 if matched else 200)
        handler.send_header("ETag", etag)
        if body:
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _ask(self, budget_id: uuid.UUID, ask: LeaseAsk) -> tuple[int, dict[str, Any]]:
        with self._lock:
            existing = next(
                (h for h in self.leases.values() if h.lease.request_id == ask.request_id), None
            )
            if existing is not None:
                self.asks.append((ask, 200))
                return 200, _json(self._read(existing).lease)
            found = next((b for b in self.current.budgets if b.id == budget_id), None)
            if found is None:
                return 404, {"code": "not_found", "detail": "no such budget"}
            left = found.limit_usd - self.spent.get(budget_id, Decimal(0))
            left -= self._held_back(budget_id)
            left_tokens = self._tokens_left(found)
            tokens = None
            if left_tokens is not None and ask.tokens is not None:
                tokens = min(ask.tokens, left_tokens)
            if left <= 0 or (left_tokens is not None and left_tokens <= 0):
                self.asks.append((ask, 409))
                return 409, {"code": "budget_exhausted", "detail": "nothing left"}
            now = datetime.now(UTC)
            window = window_of(found.period, found.timezone, now)
            lease = Lease(
                id=uuid.uuid4(),
                budget_id=budget_id,
                request_id=ask.request_id,
                holder=ask.holder,
                state="active",
                granted_usd=min(ask.amount_usd, left),
                granted_tokens=tokens,
                window_start=None if window is None else window[0],
                window_end=None if window is None else window[1],
                expires_at=now + timedelta(seconds=ask.ttl),
                budget_version=found.version,
            )
            self.leases[lease.id] = _Held(lease)
            self._note_peak(budget_id)
            self.asks.append((ask, 201))
            self._lock.notify_all()
            return 201, _json(lease)

    def _report(self, lease_id: uuid.UUID, report: LeaseReport) -> tuple[int, dict[str, Any]]:
        with self._lock:
            held = self.leases.get(lease_id)
            if held is None:
                return 404, {"code": "not_found", "detail": "no such lease"}
            lease = self._read(held).lease
            budget_id = lease.budget_id
            granted, granted_tokens = lease.granted_usd, lease.granted_tokens
            found = next((b for b in self.current.budgets if b.id == budget_id), None)
            growing = lease.state == "active" and not report.release and found is not None
            if report.more_usd is not None and growing and found is not None:
                left = found.limit_usd
                left -= self.spent.get(budget_id, Decimal(0)) + self._held_back(budget_id)
                granted += max(Decimal(0), min(report.more_usd, left))
            if report.more_tokens is not None and growing and found is not None:
                left_tokens = self._tokens_left(found)
                if left_tokens is not None:
                    more_tokens = max(0, min(report.more_tokens, left_tokens))
                    granted_tokens = (granted_tokens or 0) + more_tokens
            update: dict[str, Any] = {
                "spent_usd": report.spent_usd,
                "granted_usd": granted,
                "granted_tokens": granted_tokens,
            }
            if report.spent_tokens is not None:
                held.spent_tokens = max(held.spent_tokens, report.spent_tokens)
            if lease.state == "active":
                if report.release:
                    update["state"] = "released"
                elif report.renew_ttl is not None:
                    update["expires_at"] = datetime.now(UTC) + timedelta(seconds=report.renew_ttl)
            held.lease = lease.model_copy(update=update)
            self._note_peak(budget_id)
            self.reports.append((lease_id, report, 200))
            self._lock.notify_all()
            return 200, _json(held.lease)

    def _read(self, held: _Held) -> _Held:
        """``held`` as read now: an active lease past its expiry is expired (caller locks)."""
        if held.lease.state == "active" and datetime.now(UTC) >= held.lease.expires_at:
            held.lease = held.lease.model_copy(update={"state": "expired"})
        return held

    def _held_back(self, budget_id: uuid.UUID) -> Decimal:
        total = Decimal(0)
        for held in self.leases.values():
            if held.lease.budget_id != budget_id:
                continue
            lease = self._read(held).lease
            kept = lease.granted_usd if lease.state == "active" else lease.spent_usd
            total += max(kept - held.charged, Decimal(0))
        return total

    def _held_back_tokens(self, budget_id: uuid.UUID) -> int:
        total = 0
        for held in self.leases.values():
            if held.lease.budget_id != budget_id:
                continue
            lease = self._read(held).lease
            kept = (lease.granted_tokens or 0) if lease.state == "active" else held.spent_tokens
            total += max(kept - held.charged_tokens, 0)
        return total

    def _tokens_left(self, found: Budget) -> int | None:
        """The tokens ``found`` has left (None: it limits none; caller locks)."""
        if found.limit_tokens is None:
            return None
        spent = self.spent_tokens.get(found.id, 0)
        return found.limit_tokens - spent - self._held_back_tokens(found.id)

    def _note_peak(self, budget_id: uuid.UUID) -> None:
        committed = self.spent.get(budget_id, Decimal(0)) + self._held_back(budget_id)
        self.peak[budget_id] = max(self.peak.get(budget_id, Decimal(0)), committed)
        tokens = self.spent_tokens.get(budget_id, 0) + self._held_back_tokens(budget_id)
        self.peak_tokens[budget_id] = max(self.peak_tokens.get(budget_id, 0), tokens)


def _json(lease: Lease) -> dict[str, Any]:
    return json.loads(lease.model_dump_json())  # type: ignore[no-any-return]


def _answer(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    payload = json.dumps(body).encode()
    handler.send_response(status)
    kind = "application/problem+json" if status >= 400 else "application/json"
    handler.send_header("Content-Type", kind)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)
