"""Delivery counters: what was queued, sent, retried, spooled and dropped, and why."""

from __future__ import annotations

import dataclasses
import threading
from typing import Final, Literal

__all__ = ["DROP_REASONS", "Counters", "FlushResult", "Stats"]

DROP_REASONS: Final = (
    "queue_full",
    "oversize",
    "serialization_error",
    "before_send",
    "export_failed",
    "rejected",
    "no_exporter",
)
"""Why an event can be dropped. ``before_send``: the user's hook returned ``None`` or failed;
``rejected``: the hub took the batch but refused this event as invalid (HTTP 207);
``no_exporter``: the SDK was started with ``exporter="none"``."""


@dataclasses.dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of the SDK's delivery counters since ``init()`` (or since a fork)."""

    queued: int
    """Events in memory now, waiting for the worker."""
    sent: int
    """Events the exporter confirmed (for the hub: acknowledged, hence committed)."""
    dropped: dict[str, int]
    """Events given up on, by reason (see ``DROP_REASONS``)."""
    retried: int
    """Export attempts that were retried."""
    spooled: int
    """Events written to the disk spool because the hub could not be reached."""
    spool_delivered: int
    """Spooled events later delivered from the spool (by this process)."""
    auth_failures: int
    """Exports refused by the hub for a bad or revoked API key."""

    @property
    def dropped_total(self) -> int:
        """All dropped events, whatever the reason."""
        return sum(self.dropped.values())


@dataclasses.dataclass(frozen=True, slots=True)
class FlushResult:
    """What ``flush()`` or ``shutdown()`` achieved before returning."""

    completed: bool
    """True when every event queued before the call was settled (sent, spooled or dropped)."""
    sent: int
    """Events delivered while the call waited."""
    spooled: int
    """Events written to the spool while the call waited."""
    dropped: int
    """Events dropped while the call waited."""
    pending: int
    """Events still in memory when the call returned."""


Counter = Literal["sent", "retried", "spooled", "spool_delivered", "auth_failures"]


class Counters:
    """Mutable counters behind :class:`Stats`.

    Agent threads (drops at the queue), the worker and ``shutdown()`` all write them, so every
    write takes the lock: ``+=`` on an attribute is not atomic across threads.
    """

    __slots__ = (
        "_lock",
        "auth_failures",
        "dropped",
        "retried",
        "sent",
        "spool_delivered",
        "spooled",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent = 0
        self.retried = 0
        self.spooled = 0
        self.spool_delivered = 0
        self.auth_failures = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)

    def drop(self, reason: str, count: int = 1) -> None:
        """Count ``count`` events dropped for ``reason``."""
        with self._lock:
            self.dropped[reason] += count

    def add(self, counter: Counter, count: int = 1) -> None:
        """Add ``count`` to one of the counters."""
        with self._lock:
            setattr(self, counter, getattr(self, counter) + count)

    @property
    def settled(self) -> int:
        """Events whose fate is decided: sent, spooled or dropped."""
        return self.sent + self.spooled + sum(self.dropped.values())

    def snapshot(self, queued: int) -> Stats:
        """Freeze the counters into a :class:`Stats`."""
        return Stats(
            queued=queued,
            sent=self.sent,
            dropped=dict(self.dropped),
            retried=self.retried,
            spooled=self.spooled,
            spool_delivered=self.spool_delivered,
            auth_failures=self.auth_failures,
        )
