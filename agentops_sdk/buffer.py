"""The bounded in-memory queue between agent threads and the worker.

``put`` is the only thing the caller's thread does with a finished event: a short critical
section, no I/O, no serialisation, never a wait. The bounds cover every event in memory: those
queued and those taken but not yet settled (being encoded, handed to the sender, or in flight),
which the worker gives back with :meth:`EventBuffer.release`. When the queue is full (by count or
by bytes) and an ``overflow`` is set, the oldest batch's worth of queued events is taken out and
handed to it on the caller's thread (the worker spills them to the spool: see
:meth:`Worker.spill`); without one, or when nothing queued is left to spill, the new event is
dropped and counted. Either way memory stays bounded.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol

from agentops_sdk.stats import Counters

__all__ = ["EventBuffer", "Queued", "Taken"]


class Queued(Protocol):
    """What the buffer holds: anything with an estimated ``size`` in bytes."""

    size: int


class Taken(list[Queued]):
    """Events taken from the buffer, with the bytes they were counted at."""

    size: int = 0


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
        self._out_events = 0
        self._out_bytes = 0
        """Taken by the worker, not yet settled: still in memory, still within the bounds."""
        self._lock = threading.Lock()
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._max_event_bytes = max_event_bytes
        self._batch_events = batch_events
        self._batch_bytes = batch_bytes
        self._counters = counters
        self.overflow: Callable[[Sequence[Queued]], None] | None = None
        """Takes the oldest events of a full queue (on the caller's thread); None: drop."""
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
        spilled: list[Queued] | None = None
        with self._lock:
            # _full(size), inlined: this runs for every event an agent records.
            if (
                len(self._items) + self._out_events >= self._max_events
                or self._bytes + self._out_bytes + size > self._max_bytes
            ):
                if self.overflow is not None:
                    spilled = self._make_room(size)
                accepted = not self._full(size)
                if not accepted:
                    self._counters.drop("queue_full")
            else:
                accepted = True
            if accepted:
                self._items.append((item, size))
                self._bytes += size
                self.enqueued += 1
            ready = len(self._items) >= self._batch_events or self._bytes >= self._batch_bytes
        if spilled and self.overflow is not None:
            self.overflow(spilled)
        if ready and not self.batch_ready.is_set():
            self.batch_ready.set()
        return accepted

    def release(self, events: int, size: int) -> None:
        """``events`` taken earlier (counted at ``size`` bytes) are settled: free their room."""
        with self._lock:
            self._out_events -= events
            self._out_bytes -= size

    def _full(self, size: int) -> bool:
        """Whether one more event of ``size`` bytes would pass a bound (under the lock)."""
        return (
            len(self._items) + self._out_events >= self._max_events
            or self._bytes + self._out_bytes + size > self._max_bytes
        )

    def _make_room(self, size: int) -> list[Queued]:
        """Take out the oldest events, a batch's worth at least, until ``size`` more fits."""
        taken: list[Queued] = []
        items = self._items
        while items and (len(taken) < self._batch_events or self._full(size)):
            item, counted = items.popleft()
            taken.append(item)
            self._bytes -= counted
        return taken

    def take(self, max_events: int, max_bytes: int) -> Taken:
        """Remove and return up to ``max_events`` items totalling about ``max_bytes``; they count
        within the bounds until they are given back with :meth:`release`."""
        taken = Taken()
        with self._lock:
            budget = max_bytes
            items = self._items
            while items and len(taken) < max_events:
                size = items[0][1]
                if taken and size > budget:
                    break
                taken.append(items.popleft()[0])
                budget -= size
            taken.size = max_bytes - budget
            self._bytes -= taken.size
            self._out_events += len(taken)
            self._out_bytes += taken.size
        return taken
