"""Helpers for tests of ``GET /api/v1/stream``: a topic whose versions the test sets, and an SSE
client in a thread whose events the test waits on with deadlines."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import httpx_sse
from litestar import Litestar
from litestar.di import Provide
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from agentops_server.backends.live import LiveUpdates, StreamTopic
from tests.server.api import bearer
from tests.server.database import direct_session

VERSIONS_TABLE = "stream_test_versions"


class MemoryTopic:
    """A topic whose versions live in this process: ``bump(org)`` makes a new one."""

    def __init__(self, kind: str = "probe", render: Callable[[uuid.UUID, int], str] | None = None):
        self.kind = kind
        self.versions: dict[uuid.UUID, int] = {}
        self.render = render or (lambda org, version: json.dumps({"org": str(org), "v": version}))
        self.loop: asyncio.AbstractEventLoop | None = None
        """The hub's event loop, once a snapshot was loaded on it."""
        self.broken = False
        """While true, loading a snapshot fails (as with the database down)."""

    @property
    def topic(self) -> StreamTopic:
        return StreamTopic(self.kind, snapshot=self._snapshot, version=self._version)

    def bump(self, org_id: uuid.UUID) -> int:
        self.versions[org_id] = self.versions.get(org_id, 1) + 1
        return self.versions[org_id]

    async def _snapshot(self, _session: AsyncSession, org_id: uuid.UUID) -> tuple[int, str]:
        self.loop = asyncio.get_running_loop()
        if self.broken:
            raise ConnectionError("the database is down")
        version = self.versions.setdefault(org_id, 1)
        return version, self.render(org_id, version)

    async def _version(self, _session: AsyncSession, org_id: uuid.UUID) -> int:
        return self.versions.setdefault(org_id, 1)


def database_topic(kind: str = "probe") -> StreamTopic:
    """A topic whose versions are rows of ``VERSIONS_TABLE`` (made by :func:`make_versions_table`),
    so that another process can change them."""

    async def snapshot(session: AsyncSession, org_id: uuid.UUID) -> tuple[int, str]:
        version = await _version(session, org_id)
        return version, json.dumps({"org": str(org_id), "v": version})

    async def _version(session: AsyncSession, org_id: uuid.UUID) -> int:
        found = await session.execute(
            text(f"SELECT version FROM {VERSIONS_TABLE} WHERE org_id = :org"), {"org": str(org_id)}
        )
        return int(found.scalar() or 0)

    return StreamTopic(kind, snapshot=snapshot, version=_version)


def make_versions_table(database_url: str) -> None:
    with direct_session(database_url) as session:
        session.execute(
            text(f"CREATE TABLE {VERSIONS_TABLE} (org_id TEXT PRIMARY KEY, version INT)")
        )
        if session.bind is not None and session.bind.dialect.name == "postgresql":
            session.execute(text(f"GRANT SELECT ON {VERSIONS_TABLE} TO agentops_app"))
        session.commit()


def live_of(app: Litestar) -> LiveUpdates:
    """The app's live updates (its ``live`` dependency)."""
    provide = app.dependencies["live"]
    assert isinstance(provide, Provide)
    live = provide.dependency()
    assert isinstance(live, LiveUpdates)
    return live


def on_hub_loop(topic: MemoryTopic, work: Any, timeout: float = 10.0) -> Any:
    """Run the coroutine ``work`` on the hub's event loop (known once a stream opened)."""
    assert topic.loop is not None, "no stream opened yet: the hub's loop is unknown"
    return asyncio.run_coroutine_threadsafe(work, topic.loop).result(timeout)


class Listener:
    """``GET /api/v1/stream`` read with httpx-sse in a thread."""

    def __init__(self, base_url: str, key: str, last_event_id: str | None = None) -> None:
        headers = bearer(key)
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.events: list[httpx_sse.ServerSentEvent] = []
        self.status: int | None = None
        self.ended = False
        self._changed = threading.Condition()
        self._client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(10, read=30))
        self._thread = threading.Thread(target=self._read, args=(headers,), daemon=True)
        self._thread.start()

    def wait_for(self, wanted: Callable[[list[httpx_sse.ServerSentEvent]], Any], what: str) -> Any:
        deadline = time.monotonic() + 10
        with self._changed:
            while not (found := wanted(self.events)):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.ended and not found):
                    raise AssertionError(f"no {what} on the stream: {self.kinds()}")
                self._changed.wait(min(remaining, 0.5))
            return found

    def wait_ended(self) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.ended, 10), "the stream did not end"

    def kinds(self) -> list[tuple[str, str]]:
        return [(event.event, event.id) for event in self.events]

    def close(self) -> None:
        self._client.close()
        self._thread.join(10)

    def _read(self, headers: dict[str, str]) -> None:
        try:
            with httpx_sse.connect_sse(
                self._client, "GET", "/api/v1/stream", headers=headers
            ) as es:
                with self._changed:
                    self.status = es.response.status_code
                    self._changed.notify_all()
                if es.response.status_code != 200:
                    es.response.read()
                    return
                for event in es.iter_sse():
                    with self._changed:
                        self.events.append(event)
                        self._changed.notify_all()
        except (httpx.HTTPError, RuntimeError, ValueError):
            pass
        finally:
            with self._changed:
                self.ended = True
                self._changed.notify_all()


@contextmanager
def listening(base_url: str, key: str, last_event_id: str | None = None) -> Iterator[Listener]:
    listener = Listener(base_url, key, last_event_id)
    try:
        yield listener
    finally:
        listener.close()


def last_of(kind: str) -> Callable[[list[httpx_sse.ServerSentEvent]], Any]:
    """A predicate: the newest event of ``kind`` received (None before one came)."""
    return lambda events: next((e for e in reversed(events) if e.event == kind), None)
