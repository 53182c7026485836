"""An in-process stand-in for the hub's side of the hub link, for tests and offline use.

    hub = LocalHub()
    with capture_events(hub_url="http://hub.invalid", hub_source=hub) as events:
        events.client.enforcer.install(MyStage())   # a stage whose ``topics`` include "controls"
        hub.publish("controls", frozen_controls)    # reaches the link's snapshot at once

It keeps the latest value of each topic with an ETag, and serves every link reading from it what
it has not seen yet, like the hub's stream resumed with ``Last-Event-ID``. ``fail()`` makes the
next reads fail, to see a link keep its last state and come back.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from typing import Any

from agentops_sdk.enforcement.link import HubSource, Snapshot, Update

__all__ = ["LocalHub"]

_IDLE_CHECK = 0.05
"""How often a waiting reader looks at its stop event, in seconds (a stop is noticed that fast)."""


class LocalHub(HubSource):
    """The hub's latest state per topic, held in this process."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._values: dict[str, tuple[Any, str]] = {}
        self._versions = itertools.count(1)
        self._failures_left = 0
        self.connections = 0
        """How many times a link started reading (once, plus once per reconnection)."""
        self._reading = 0

    def publish(self, topic: str, value: Any) -> str:
        """Make ``value`` the state of ``topic``; return its ETag."""
        with self._changed:
            etag = f'"{next(self._versions)}"'
            self._values[topic] = (value, etag)
            self._changed.notify_all()
        return etag

    @property
    def connected(self) -> bool:
        """Whether a link is reading from it now."""
        return self._reading > 0

    @property
    def opened(self) -> int:
        """How many times a link started reading (``connections``)."""
        return self.connections

    def after_fork(self) -> None:
        """A forked child's copy starts with a fresh lock (the parent's link may have held it)."""
        self._changed = threading.Condition()

    def fail(self, times: int = 1) -> None:
        """Make the next ``times`` reads raise ``ConnectionError``, as a hub that went away."""
        with self._changed:
            self._failures_left += times
            self._changed.notify_all()

    def updates(
        self, topics: frozenset[str], known: Snapshot, stop: threading.Event
    ) -> Iterator[Update]:
        """What :class:`HubSource` asks: every topic change the reader has not seen, as it comes."""
        with self._changed:
            self.connections += 1
            self._reading += 1
        try:
            yield from self._read(topics, known, stop)
        finally:
            with self._changed:
                self._reading -= 1

    def _read(
        self, topics: frozenset[str], known: Snapshot, stop: threading.Event
    ) -> Iterator[Update]:
        seen = dict(known.etags)
        while not stop.is_set():
            with self._changed:
                if self._failures_left:
                    self._failures_left -= 1
                    raise ConnectionError("the local hub went away")
                news = [
                    Update(topic, value, etag, via="stream")
                    for topic, (value, etag) in self._values.items()
                    if topic in topics and seen.get(topic) != etag
                ]
                if not news:
                    self._changed.wait(_IDLE_CHECK)
            for update in news:
                seen[update.topic] = update.etag or ""
                yield update
