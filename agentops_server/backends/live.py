"""Live updates: what the hub pushes to each org's SDKs and pages, over one typed stream.

A *topic* is a kind of state an org has a current version of (``controls`` first; policies,
approvals, budgets and notifications later). Each registers a :class:`StreamTopic`: how to load
the org's current snapshot (its version and its JSON), and how to read the version alone,
cheaply. :class:`LiveUpdates` does the rest::

    live.register(StreamTopic("controls", snapshot=controls_snapshot, version=controls_version))
    await live.refresh(org_id, "controls")   # after a commit that changed the org's controls
    async for event in live.events(org_id, last_event_id):   # GET /api/v1/stream
        ...

A refresh reaches the streams of its own process at once, and, through Litestar's channels on
Redis pub/sub when ``settings.redis_url`` is set (one channel per org), the streams held by
every other. A *version watch* covers what no process announced (the CLI writing straight to the
database, another process with no Redis, or with Redis down): every ``stream_watch_interval``
seconds each process reads the versions of the orgs it holds streams for, and hands those that
moved to its own streams. So Redis only makes a change faster to reach other processes; no
change waits for it.

Besides topics, an org's stream carries *passing events* (:meth:`LiveUpdates.announce`): a
run started or updated, an approval requested or decided. They are news, not state: sent to the
streams open when they happen (on every process, through the same channel), each once per
stream, and never replayed on a resume (their id is the stream's cursor, unchanged); a client
that reconnects reads the current state through the API.

Events carry a *cursor* as their id: the version of every topic the client now holds, as
``controls:7`` (topics sorted, comma-separated). Reconnecting with it as ``Last-Event-ID``
resumes on any hub process: a topic is sent again only if its version differs. Each stream has a
bounded backlog (``stream_backlog`` events): a client that falls behind is sent ``resync`` and its
stream ends, so the hub's memory does not grow with slow readers. See
docs/decisions/0025-controls-propagation.md.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import re
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

from litestar.channels import ChannelsPlugin, Subscriber
from litestar.channels.backends.base import ChannelsBackend
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from agentops_server.db.engine import open_session
from agentops_server.db.tenancy import tenant
from agentops_server.settings import Settings

__all__ = [
    "HEARTBEAT",
    "RESYNC",
    "LiveEvent",
    "LiveUpdates",
    "StreamTopic",
    "format_cursor",
    "parse_cursor",
]

logger = logging.getLogger("agentops_server.live")

HEARTBEAT: Final = "heartbeat"
"""Sent after ``stream_heartbeat`` seconds of quiet, with the current cursor: nothing changed."""
RESYNC: Final = "resync"
"""Sent (without an id) before a stream is ended because its client fell behind: what it missed
is gone, it must fetch its state again and reconnect without ``Last-Event-ID``."""
REDIS_PREFIX: Final = "agentops:live"
_KIND = re.compile(r"^[a-z][a-z0-9_]*$")
_PASSING: Final = "*"
"""Marks a passing event's id where a topic's message has its version."""
_SEEN: Final = 256
"""Passing events a stream remembers, to send one that arrives twice (its own process and the
channel) once."""

Snapshot = Callable[[AsyncSession, uuid.UUID], Awaitable[tuple[int, str]]]
"""``(session, org_id) -> (version, data)``: the org's current state of a topic, as JSON."""
Version = Callable[[AsyncSession, uuid.UUID], Awaitable[int]]
"""``(session, org_id) -> version``: the version alone, read every watch interval."""


@dataclasses.dataclass(frozen=True, slots=True)
class StreamTopic:
    """A kind of event on the stream: an org's state of one thing, versioned.

    Both functions run in a short session acting as the org (row-level security applies), and
    the version must grow with every change the topic's clients must see."""

    kind: str
    snapshot: Snapshot
    version: Version

    def __post_init__(self) -> None:
        if not _KIND.match(self.kind) or self.kind in (HEARTBEAT, RESYNC):
            raise ValueError(f"a stream topic's kind must be a lowercase name, got {self.kind!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class LiveEvent:
    """One event of an org's stream: its kind, its id (None for ``resync``) and JSON data."""

    kind: str
    id: str | None
    data: str


class LiveUpdates:
    """The org streams of one hub process; built by :meth:`from_settings`."""

    def __init__(
        self,
        engine: AsyncEngine,
        backend: ChannelsBackend,
        *,
        heartbeat: float = 15.0,
        max_age: float = 600.0,
        backlog: int = 32,
        watch_interval: float = 0.25,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.heartbeat = heartbeat
        self.max_age = max_age
        self.watch_interval = watch_interval
        self.channels = ChannelsPlugin(
            backend,
            arbitrary_channels_allowed=True,
            subscriber_max_backlog=backlog,
            subscriber_backlog_strategy="backoff",
            subscriber_class=_Backlog,
        )
        """Litestar's channels plugin: the app adds it to its plugins (it starts the backend)."""
        self._engine = engine
        self._backend = backend
        self._topics: dict[str, StreamTopic] = {}
        self._published: dict[tuple[uuid.UUID, str], int] = {}
        self._watched: Counter[uuid.UUID] = Counter()
        self._streams: set[_Backlog] = set()
        self._local: dict[uuid.UUID, set[_Backlog]] = {}
        self._shared = not isinstance(backend, MemoryChannelsBackend)
        self._watch: asyncio.Task[None] | None = None
        self._on_close = on_close

    @classmethod
    def from_settings(cls, settings: Settings, engine: AsyncEngine) -> LiveUpdates:
        """Live updates on Redis pub/sub when ``settings.redis_url`` is set, else in-process."""
        if settings.redis_url is None:
            backend: ChannelsBackend = MemoryChannelsBackend()
            on_close = None
        else:
            redis = Redis.from_url(settings.redis_url)
            # The backend reads the channel with this timeout, in milliseconds; at Litestar's
            # default (1 ms) a read is often cut short mid-message on a loaded machine and the
            # message lost (seen as passing events that never arrived, 1 in 2 on PostgreSQL
            # tests); a second costs nothing, as a message ends the wait at once.
            backend = RedisChannelsPubSubBackend(
                redis=redis, key_prefix=REDIS_PREFIX, stream_sleep_no_subscriptions=1000
            )
            on_close = redis.aclose
        return cls(
            engine,
            backend,
            on_close=on_close,
            heartbeat=settings.stream_heartbeat,
            max_age=settings.stream_max_age,
            backlog=settings.stream_backlog,
            watch_interval=settings.stream_watch_interval,
        )

    def register(self, topic: StreamTopic) -> None:
        """Add ``topic`` to every org's stream (once per kind)."""
        if topic.kind in self._topics:
            raise ValueError(f"the stream topic {topic.kind!r} is already registered")
        self._topics[topic.kind] = topic

    @property
    def topics(self) -> tuple[str, ...]:
        """The kinds registered, sorted."""
        return tuple(sorted(self._topics))

    @property
    def backlogs(self) -> list[int]:
        """The events waiting to be sent, for each open stream (each at most the backlog)."""
        return [subscriber.qsize for subscriber in self._streams]

    async def refresh(self, org_id: uuid.UUID, kind: str) -> None:
        """Load the org's ``kind`` snapshot and publish it to every stream of the org, on every
        hub process, unless this process already published that version or a newer one.

        Call it after the commit of a change (``controls_changed(org_id)``). It never raises
        for the database or the channel: the change is committed, and the version watch of each
        process streaming to the org brings it within an interval."""
        topic = self._topics[kind]
        try:
            await self._load_and_publish(org_id, topic)
        except Exception:
            logger.exception("live updates: cannot publish %s of org %s", kind, org_id)

    async def announce(self, org_id: uuid.UUID, kind: str, data: str) -> None:
        """Send the passing event ``kind`` (a lowercase name no topic has) with JSON ``data``
        to every stream of the org open now, on every hub process.

        Call it after the commit of what it tells. It works in a process that serves no
        stream (a worker: through Redis alone), and never raises for the channel: a stream
        that misses a passing event reads the state through the API."""
        if not _KIND.match(kind) or kind in self._topics or kind in (HEARTBEAT, RESYNC):
            raise ValueError(f"not a passing event kind: {kind!r}")
        message = f"{kind} {_PASSING}{uuid.uuid4().hex}\n{data}".encode()
        for subscriber in self._local.get(org_id, ()):
            subscriber.put_nowait(message)
        if self._shared:
            try:
                await self._backend.publish(message, [_channel(org_id)])
            except Exception:
                logger.exception("live updates: cannot announce %s to org %s", kind, org_id)

    async def events(
        self, org_id: uuid.UUID, last_event_id: str | None = None
    ) -> AsyncIterator[LiveEvent]:
        """The org's stream: each topic's snapshot the client lacks (by ``last_event_id``),
        then every newer version published, a heartbeat after each quiet ``heartbeat``
        seconds; it ends after ``max_age`` seconds, or with ``resync`` if the client fell
        behind. No database session stays open while it waits."""
        held = parse_cursor(last_event_id)
        deadline = time.monotonic() + self.max_age
        async with self._subscription(org_id) as subscriber:  # before loading: nothing slips by
            async with _acting_as(self._engine, org_id) as session:
                snapshots = [
                    (kind, *await self._topics[kind].snapshot(session, org_id))
                    for kind in self.topics
                ]
            for kind, version, data in snapshots:
                self._remember(org_id, kind, version)
                if held.get(kind) != version:
                    held[kind] = version
                    yield LiveEvent(kind, format_cursor(held), data)
            seen: collections.deque[str] = collections.deque(maxlen=_SEEN)  # passing events
            while (remaining := deadline - time.monotonic()) > 0:
                if subscriber.overflowed:
                    yield LiveEvent(RESYNC, None, "{}")
                    return
                message = await subscriber.next_message(min(self.heartbeat, remaining))
                if message is _ENDED:
                    return
                if message is None:
                    if remaining > self.heartbeat:
                        yield LiveEvent(HEARTBEAT, format_cursor(held), "{}")
                    continue
                kind, mark, data = _decode(message)
                if isinstance(mark, str):  # a passing event: once, whichever way it came
                    if mark not in seen:
                        seen.append(mark)
                        yield LiveEvent(kind, format_cursor(held), data)
                    continue
                version = mark
                self._remember(org_id, kind, version)  # from another process: no reload here
                if kind in self._topics and version > held.get(kind, -1):
                    held[kind] = version
                    yield LiveEvent(kind, format_cursor(held), data)

    async def start(self) -> None:
        """Start the version watch (the app's start)."""
        if self._topics and self._watch is None:
            self._watch = asyncio.create_task(self._watch_versions(), name="live-version-watch")

    async def close(self) -> None:
        """Stop the watch and end every open stream (the app's shutdown)."""
        if self._watch is not None:
            self._watch.cancel()
            if self._watch.get_loop() is asyncio.get_running_loop():  # an app may be started
                with contextlib.suppress(asyncio.CancelledError):  # and stopped on two loops
                    await self._watch  # (a test client each): the other loop is gone
            self._watch = None
        for subscriber in list(self._streams):
            subscriber.end()
        if self._on_close is not None:  # after the channels plugin stopped (Litestar's order)
            await self._on_close()

    # -- inside -------------------------------------------------------------------------------

    async def _load_and_publish(
        self, org_id: uuid.UUID, topic: StreamTopic, *, to_others: bool = True
    ) -> None:
        async with _acting_as(self._engine, org_id) as session:
            version, data = await topic.snapshot(session, org_id)
        self._publish(org_id, topic.kind, version, data, to_others=to_others)

    def _publish(
        self, org_id: uuid.UUID, kind: str, version: int, data: str, *, to_others: bool
    ) -> None:
        """Hand the event to this process's streams of the org at once, and, when the backend
        is shared (Redis) and ``to_others``, to every other process's: this process's own
        streams never wait on Redis, so a Redis outage leaves each process's version watch to
        carry changes (a duplicate from the channel is skipped by version)."""
        key = (org_id, kind)
        if self._published.get(key, -1) >= version:
            return
        if org_id in self._watched:  # remembered only while this process streams to the org
            self._published[key] = version
        message = f"{kind} {version}\n{data}".encode()
        for subscriber in self._local.get(org_id, ()):
            subscriber.put_nowait(message)
        if self._shared and to_others:
            self.channels.publish(message, _channel(org_id))

    def _remember(self, org_id: uuid.UUID, kind: str, version: int) -> None:
        key = (org_id, kind)
        self._published[key] = max(version, self._published.get(key, -1))

    @contextlib.asynccontextmanager
    async def _subscription(self, org_id: uuid.UUID) -> AsyncIterator[_Backlog]:
        subscriber = await self.channels.subscribe(_channel(org_id))
        assert isinstance(subscriber, _Backlog)
        self._watched[org_id] += 1
        self._streams.add(subscriber)
        self._local.setdefault(org_id, set()).add(subscriber)
        try:
            yield subscriber
        finally:
            self._streams.discard(subscriber)
            local = self._local.get(org_id, set())
            local.discard(subscriber)
            if not local:
                self._local.pop(org_id, None)
            self._watched[org_id] -= 1
            if not self._watched[org_id]:
                del self._watched[org_id]
                for kind in self._topics:
                    self._published.pop((org_id, kind), None)
            await self.channels.unsubscribe(subscriber, _channel(org_id))

    async def _watch_versions(self) -> None:
        """Refresh every watched org whose version of a topic moved since it was published;
        a failing database is logged once until the versions can be read again."""
        failing = False
        while True:
            await asyncio.sleep(self.watch_interval)
            try:
                for org_id in list(self._watched):
                    await self._refresh_moved(org_id)
            except Exception:
                if not failing:
                    logger.exception("live updates: cannot read the versions of streamed orgs")
                failing = True
            else:
                if failing:
                    logger.info("live updates: the versions of streamed orgs can be read again")
                failing = False

    async def _refresh_moved(self, org_id: uuid.UUID) -> None:
        async with _acting_as(self._engine, org_id) as session:
            moved = [
                kind
                for kind, topic in self._topics.items()
                if await topic.version(session, org_id) > self._published.get((org_id, kind), -1)
            ]
        for kind in moved:  # every process watches for itself: no need to tell the others
            await self._load_and_publish(org_id, self._topics[kind], to_others=False)


class _Backlog(Subscriber):
    """A stream's subscriber: a bounded backlog that notes when it overflowed."""

    overflowed = False

    def put_nowait(self, item: bytes | None) -> bool:
        """Queue ``item``; a full backlog drops it and marks the stream for ``resync``."""
        if super().put_nowait(item):
            return True
        self.overflowed = True
        return False

    async def put(self, item: bytes | None) -> None:
        """Queue ``item``; the end of the stream (None) is never refused for a full backlog
        (Litestar's ``unsubscribe`` would wait for the slow client)."""
        if item is None:
            self.end()
        else:
            await super().put(item)

    def end(self) -> None:
        """End the stream at its next read: what it had not sent yet is dropped."""
        queue: asyncio.Queue[bytes | None] = self._queue
        while not queue.empty():
            queue.get_nowait()
            queue.task_done()
        queue.put_nowait(None)

    async def next_message(self, timeout: float) -> bytes | object | None:
        """The next message, None after ``timeout`` seconds without one, or ``_ENDED``."""
        try:
            item = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        self._queue.task_done()
        return _ENDED if item is None else item


_ENDED: Final = object()


@contextlib.asynccontextmanager
async def _acting_as(engine: AsyncEngine, org_id: uuid.UUID) -> AsyncIterator[AsyncSession]:
    """A short session acting as the org (its own transaction, so row-level security applies)."""
    with tenant(org_id=org_id):
        async with open_session(engine) as session, session.begin():
            yield session


def _channel(org_id: uuid.UUID) -> str:
    return f"org:{org_id}"


def _decode(message: Any) -> tuple[str, int | str, str]:
    """A message's kind, version (a topic's) or id (a passing event's, as text), and data."""
    header, _, data = bytes(message).decode().partition("\n")
    kind, _, version = header.partition(" ")
    if version.startswith(_PASSING):
        return kind, version, data
    return kind, int(version), data


def format_cursor(held: dict[str, int]) -> str:
    """An event id: the version of each topic the client holds, as ``a:1,controls:7``."""
    return ",".join(f"{kind}:{version}" for kind, version in sorted(held.items()))


def parse_cursor(value: str | None) -> dict[str, int]:
    """The versions a ``Last-Event-ID`` says the client holds; an id the hub did not make
    (or none) holds nothing, so everything is sent."""
    held: dict[str, int] = {}
    for part in (value or "").split(","):
        kind, _, version = part.strip().partition(":")
        if _KIND.match(kind) and version.isdigit():
            held[kind] = int(version)
    return held
