"""The hub link: the SDK's receiving side of the hub.

One daemon thread per client reads a :class:`HubSource` (the hub's event stream, with ETag
polling as its fallback; in tests, :class:`~agentops_sdk.enforcement.local.LocalHub`) and
publishes what it learns as a new immutable :class:`Snapshot`. Stages read ``link.snapshot``
on every call: one attribute read, no lock, no I/O; the thread only ever replaces it whole.
A stage that must wait for news (an approval, a pause being lifted) asks :meth:`HubLink.watch`
for a future that the thread resolves on the first snapshot that settles it.

The thread runs only when the client was given a hub URL and a source, and an installed stage
reads a topic (``Stage.topics``). A forked child starts its own (``after_fork``); the snapshot it
inherited stays in force until the child hears from the hub itself.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, InvalidStateError
from types import MappingProxyType
from typing import Any

from agentops_sdk.contract.decisions import Decision
from agentops_sdk.enforcement.failures import FailureLog

__all__ = ["EMPTY", "Backoff", "HubLink", "HubSource", "Snapshot", "Update"]

_NOTHING: Mapping[str, Any] = MappingProxyType({})


@dataclasses.dataclass(frozen=True, slots=True)
class Update:
    """A new value of one topic (``controls``, ``policies``...), as the hub sent it."""

    topic: str
    value: Any
    """Immutable (tuples, frozen models, read-only mappings): every reader shares it."""
    etag: str | None = None
    """The hub's version of the value, to resume from (``If-None-Match``, ``Last-Event-ID``)."""
    via: str | None = None
    """How it came: ``stream`` (pushed), ``poll`` (fetched), ``disk`` (saved by an earlier
    process). An update repeating the value it holds says the hub confirmed it (a heartbeat)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Snapshot:
    """What the SDK knows of the hub at one moment. Never changed: replaced by a newer one."""

    values: Mapping[str, Any]
    etags: Mapping[str, str]
    version: int = 0
    """0 before anything arrived; one more with each update."""
    received_at: float | None = None
    """``time.monotonic()`` of the last update (how stale the state is)."""
    via: str | None = None
    """How the last update came (``Update.via``)."""

    def get(self, topic: str, default: Any = None) -> Any:
        """The latest value of ``topic``, or ``default`` if none came yet."""
        return self.values.get(topic, default)

    def with_update(self, update: Update) -> Snapshot:
        """A new snapshot: this one with ``update`` applied."""
        etags = self.etags
        if update.etag is not None:
            etags = MappingProxyType({**etags, update.topic: update.etag})
        return Snapshot(
            values=MappingProxyType({**self.values, update.topic: update.value}),
            etags=etags,
            version=self.version + 1,
            received_at=time.monotonic(),
            via=update.via,
        )


EMPTY = Snapshot(_NOTHING, _NOTHING)
"""What a link holds before it has heard from the hub."""


class HubSource(abc.ABC):
    """Where the hub link reads the hub's state: the hub's stream and endpoints, or a double.

    The client's link reads it (``Client(options, hub_source=...)``) on the link's thread.
    """

    @abc.abstractmethod
    def updates(
        self, topics: frozenset[str], known: Snapshot, stop: threading.Event
    ) -> Iterator[Update]:
        """Yield the updates of ``topics`` as they come, until ``stop`` is set (then return soon).

        ``known`` is what the link holds: resume after it (its ETags), do not resend it. On a
        raise (logged) or a return, the link waits a little longer each time and asks again.
        """

    @property
    def connected(self) -> bool:
        """Whether the hub pushes news now (its stream is open): a stage waiting for news
        polls for it itself while this is False."""
        return False

    @property
    def opened(self) -> int:
        """How many times the stream was opened: a stage waiting for news reads once what a
        new connection may have missed while there was none."""
        return 0

    def after_fork(self) -> None:  # noqa: B027 - most sources hold nothing a child must drop
        """In a forked child, before the link starts again: drop the parent's connections."""

    def interrupt(self) -> None:  # noqa: B027 - a source that never blocks long needs nothing
        """Called from another thread once ``stop`` is set: make a read that blocks (a stream
        waiting for its next event) return now, so the link stops at once."""


class Backoff:
    """Delays between tries of something that keeps failing: exponential, with full jitter (a
    hub restart must not bring every agent back in the same instant)."""

    def __init__(self, first: float, cap: float) -> None:
        self.first = first
        self.cap = cap
        self._delay = first

    def next(self) -> float:
        """How long to wait before the next try; each call doubles the bound, up to ``cap``."""
        delay = random.uniform(0, self._delay)
        self._delay = min(self._delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        """It worked: the next failure waits a short while again."""
        self._delay = self.first


class HubLink:
    """One client's receiving side of the hub: a daemon thread and the snapshot it publishes."""

    _lock: threading.Lock
    _changed: threading.Condition
    _failures: FailureLog
    _stop: threading.Event
    _thread: threading.Thread | None
    _retired: list[threading.Thread]
    _batching: int
    _restart_due: bool
    _watchers: list[tuple[Callable[[Snapshot], Decision | None], Future[Decision]]]

    def __init__(
        self, source: HubSource | None, *, retry_delay: float = 1.0, max_retry_delay: float = 30.0
    ) -> None:
        self.source = source
        """None when the client has no hub to listen to: the link never starts."""
        self.snapshot = EMPTY
        """The latest snapshot: read it once per decision, it never changes under you."""
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._topics: frozenset[str] = frozenset()
        self.on_update: Callable[[Snapshot], None] | None = None
        """Told every new snapshot as soon as it is published (the enforcer, which leaves
        idle stages out of the chain)."""
        self._reset()

    @property
    def running(self) -> bool:
        """Whether the link's thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def connected(self) -> bool:
        """Whether the link's source pushes the hub's news now (its stream is open)."""
        source = self.source
        return source is not None and self.running and source.connected

    @property
    def opened(self) -> int:
        """How many times the source's stream was opened (see :attr:`HubSource.opened`)."""
        return 0 if self.source is None else self.source.opened

    @property
    def topics(self) -> frozenset[str]:
        """What the installed stages read."""
        return self._topics

    @property
    def waiting(self) -> int:
        """How many :meth:`watch` futures are still unsettled."""
        with self._changed:
            return len(self._watchers)

    def require(self, topics: frozenset[str]) -> None:
        """Listen to ``topics`` too: starts the thread, or restarts its source to add them
        (at the end of :meth:`batched`, inside one)."""
        with self._lock:
            if topics <= self._topics or self.source is None:
                self._topics |= topics
                return
            self._topics |= topics
            if self._batching:
                self._restart_due = True
            else:
                self._restart_locked()

    @contextlib.contextmanager
    def batched(self) -> Iterator[None]:
        """Topics required inside start (or restart) the thread once, at the end: installing
        several stages opens one connection to the hub, not one per stage."""
        with self._lock:
            self._batching += 1
        try:
            yield
        finally:
            with self._lock:
                self._batching -= 1
                if not self._batching and self._restart_due:
                    self._restart_due = False
                    self._restart_locked()

    def watch(self, check: Callable[[Snapshot], Decision | None]) -> Future[Decision]:
        """A future resolved with the first decision ``check`` returns for a snapshot.

        ``check`` runs now against the current snapshot, then on the link's thread after every
        update, until it returns a decision or the future is cancelled (the waiting call gave up).
        """
        future: Future[Decision] = Future()
        with self._changed:
            self._watchers.append((check, future))
            self._settle()
        return future

    def restore(self, update: Update, age: float) -> None:
        """Start from a state saved earlier (``update``, learnt ``age`` seconds ago), before
        the thread runs: a restarted agent obeys what it last heard until the hub speaks."""
        with self._changed:
            snapshot = self.snapshot.with_update(update)
            self.snapshot = dataclasses.replace(snapshot, received_at=time.monotonic() - age)
            self._updated()
            self._settle()

    def recheck(self) -> None:
        """Run the :meth:`watch` checks again now, with no update: for checks that depend on
        the clock (a pause that expires while calls wait for it to be lifted)."""
        with self._changed:
            self._settle()

    def wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Block until ``condition()`` holds (checked after each change); False after
        ``timeout`` seconds. For tests and diagnostics: stages never wait like this."""
        with self._changed:
            return self._changed.wait_for(condition, timeout)

    def close(self, timeout: float = 1.0) -> None:
        """Stop the thread, and wait up to ``timeout`` seconds for it and any thread a restart
        retired; calls still waiting give up.

        Waited for, not left to die as daemons: a thread still building its HTTP client at
        exit would be loading certificates in OpenSSL while the interpreter's exit cleans
        OpenSSL up, which crashes the process (seen: SIGSEGV in ``OPENSSL_cleanup``)."""
        with self._lock:
            self._stop.set()
            threads = [*self._retired, self._thread]
            self._thread, self._retired = None, []
        if threads[-1] is not None and self.source is not None:
            self.source.interrupt()
        with self._changed:
            watchers, self._watchers = self._watchers, []
        for _, future in watchers:
            future.cancel()
        deadline = time.monotonic() + timeout
        for thread in threads:
            if thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def after_fork(self) -> None:
        """In a forked child: the parent's thread is gone; start this process's own."""
        running = self._thread is not None
        self._reset()
        if running and self.source is not None:
            self.source.after_fork()
            self._restart_locked()

    # -- the thread ---------------------------------------------------------------------------

    def _reset(self) -> None:
        # New locks: a forked child inherits the parent's in whatever state they were.
        self._lock = threading.Lock()
        self._changed = threading.Condition()  # re-entrant: _publish settles under it
        self._failures = FailureLog()
        self._stop = threading.Event()
        self._thread = None
        self._retired = []
        self._batching = 0
        self._restart_due = False
        self._watchers = []

    def _restart_locked(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._retired = [thread for thread in self._retired if thread.is_alive()]
            self._retired.append(self._thread)  # stopping: close() still waits for it
            if self.source is not None:
                self.source.interrupt()  # before the new thread reads from it
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name="agentops-hub-link", daemon=True
        )
        self._thread.start()

    def _run(self, stop: threading.Event) -> None:
        source = self.source
        assert source is not None
        backoff = Backoff(self.retry_delay, self.max_retry_delay)
        while not stop.is_set():
            try:
                for update in source.updates(self._topics, self.snapshot, stop):
                    if stop.is_set():
                        return
                    self._publish(update)
                    backoff.reset()
            except Exception:
                self._failures.failed(
                    self, "agentops: the hub link lost the hub; trying again, last state kept"
                )
            if stop.wait(backoff.next()):
                return

    def _publish(self, update: Update) -> None:
        with self._changed:
            # One store: a reader without the lock sees the old snapshot or the new one.
            self.snapshot = self.snapshot.with_update(update)
            self._updated()
            self._settle()

    def _updated(self) -> None:
        listener = self.on_update
        if listener is not None:
            try:
                listener(self.snapshot)
            except Exception:
                self._failures.failed(self, "agentops: a hub link listener failed")

    def _settle(self) -> None:
        """Give every watcher the current snapshot; keep those still undecided. Holds
        ``_changed``, so whoever waits on it sees the snapshot and its watchers settled alike."""
        snapshot = self.snapshot
        waiting = []
        for check, future in self._watchers:
            if future.done():
                continue  # cancelled: its call stopped waiting
            try:
                decision = check(snapshot)
            except Exception as exc:
                _resolve(future, exc)
                continue
            if decision is None:
                waiting.append((check, future))
            else:
                _resolve(future, decision)
        self._watchers = waiting
        self._changed.notify_all()


def _resolve(future: Future[Decision], outcome: Decision | Exception) -> None:
    try:
        if isinstance(outcome, Exception):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
    except InvalidStateError:
        pass  # cancelled between the check and now: nobody is waiting
