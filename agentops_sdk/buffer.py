"""The bounded in-memory queue between agent threads and the worker.

``put`` is the only thing the caller's thread does with a finished event: a short critical
section, no I/O, no serialisation, never a wait. When the queue is full (by count or by bytes)
the event is dropped and counted, so the agent never blocks and memory stays bounded.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Protocol

from agentops_sdk.stats import Counters

__all__ = ["EventBuffer", "Queued"]


class Queued(Protocol):
    """What the buffer holds: anything with an estimated ``size`` in bytes."""

    size: int


class EventBuffer:
    """A FIFO bounded by ``max_events`` and ``max_bytes``; drops and counts past either."""

    def __init__(
        self,
        *,
        max_events: int,
        max_bytes: int,
        max_event_bytes: int,
        batch_events: int,
        batch_bytes: int,
        counters: Counters,
    ) -> None:
        # Each item with the size it was admitted at: a run is queued when it starts and again
        # when it ends, and its estimate grows in between; freeing what was counted keeps the
        # byte total exact.
        self._items: deque[tuple[Queued, int]] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._max_event_bytes = max_event_bytes
        self._batch_events = batch_events
        self._batch_bytes = batch_bytes
        self._counters = counters
        self.enqueued = 0
        """Events accepted since creation; ``flush()`` waits until that many are settled."""
        self.batch_ready = threading.Event()
        """Set when a full batch (by count or bytes) is waiting, to wake the worker early."""

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Queued) -> bool:
        """Queue ``item``; return False (and count the drop) when it does not fit."""
        size = item.size
        if size > self._max_event_bytes:
            with self._lock:
                self._counters.drop("oversize")
            return False
        with self._lock:
            if len(self._items) >= self._max_events or self._bytes + size > self._max_bytes:
                self._counters.drop("queue_full")
                return False
            self._items.append((item, size))
            self._bytes += size
            self.enqueued += 1
            full = len(self._items) >= self._batch_events or self._bytes >= self._batch_bytes
        if full and not self.batch_ready.is_set():
            self.batch_ready.set()
        return True

    def take(self, max_events: int, max_bytes: int) -> list[Queued]:
        """Remove and return up to ``max_events`` items totalling about ``max_bytes``."""
        taken: list[Queued] = []
        with self._lock:
            budget = max_bytes
            items = self._items
            while items and len(taken) < max_events:
                size = items[0][1]
                if taken and size > budget:
                    break
                taken.append(items.popleft()[0])
                budget -= size
                self._bytes -= size
        return taken
