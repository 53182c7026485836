"""Delivery counters: what was accepted, sent, spooled and dropped, and why.

Every event the SDK accepted ends in exactly one of three places: delivered to the hub
(``sent``), waiting on disk for a later try (the spool), or dropped for a counted reason.
``Stats`` shows all three; ``FlushResult`` says what one ``flush()`` or ``shutdown()`` achieved.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Final, Literal

__all__ = ["DROP_REASONS", "Counters", "FlushResult", "Stats"]

DROP_REASONS: Final = (
    "queue_full",
    "spool_full",
    "oversize",
    "serialization_error",
    "before_send",
    "export_failed",
    "rejected",
    "no_exporter",
)
"""Why an event can be dropped.

``queue_full``: the in-memory queue was full and there was no spool to spill to (or
``overflow="drop"``); ``spool_full``: the hub could not take the event now and the disk spool had
no room left (``spool_max_bytes``) or refused the write; ``oversize``: one event larger than a
batch; ``serialization_error``: not encodable as JSON; ``before_send``: the user's hook returned
``None`` or failed; ``export_failed``: the exporter refused the batch for good (an API key the hub
refuses, a 4xx answer); ``rejected``: the hub took the batch but refused this event as invalid
(HTTP 207); ``no_exporter``: the SDK was started with ``exporter="none"``."""


@dataclasses.dataclass(frozen=True, slots=True)
class Stats:
    """A snapshot of the SDK's delivery counters since ``init()`` (or since a fork)."""

    queued: int
    """Events in memory now, waiting for the worker or on their way to the exporter."""
    sent: int
    """Events the exporter confirmed (for the hub: acknowledged, hence committed), including
    those delivered from the spool."""
    dropped: dict[str, int]
    """Events given up on, by reason (see ``DROP_REASONS``)."""
    retried: int
    """Export attempts that failed transiently and will be tried again (from the spool)."""
    spooled: int
    """Events written to the disk spool (the hub was unreachable, throttling, or slower than the
    agent)."""
    spool_delivered: int
    """Events delivered from the spool (by this process); also counted in ``sent``."""
    auth_failures: int
    """Exports refused by the hub for a bad or revoked API key."""
    accepted: int = 0
    """Events the SDK took from the agent since ``init()``."""
    rate_limited: int = 0
    """Answers in which the hub asked this SDK to slow down (HTTP 429)."""
    spool_pending: int = 0
    """Events waiting in the spool now (from this process or an earlier one)."""
    spool_bytes: int = 0
    """Bytes the spool holds now."""

    @property
    def dropped_total(self) -> int:
        """All dropped events, whatever the reason."""
        return sum(self.dropped.values())


@dataclasses.dataclass(frozen=True, slots=True)
class FlushResult:
    """What ``flush()`` or ``shutdown()`` achieved before returning."""

    completed: bool
    """True when nothing remains to deliver: every event accepted before the call was sent or
    dropped (and counted), and the spool is empty."""
    sent: int
    """Events delivered while the call waited, from memory or from the spool."""
    spooled: int
    """Events written to the spool while the call waited."""
    dropped: int
    """Events dropped while the call waited."""
    pending: int
    """Events still in memory when the call returned."""
    spool_pending: int = 0
    """Events left in the spool when the call returned (the next process with the same hub and
    API key delivers them)."""
    spool_bytes: int = 0
    """Bytes left in the spool when the call returned."""


Counter = Literal["sent", "retried", "spooled", "spool_delivered", "auth_failures", "rate_limited"]


class Counters:
    """Mutable counters behind :class:`Stats`.

    Agent threads (drops and spills at the queue), the worker, the sender and ``shutdown()`` all
    write them, so every write takes the lock: ``+=`` on an attribute is not atomic across
    threads.
    """

    __slots__ = (
        "_lock",
        "auth_failures",
        "dropped",
        "rate_limited",
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
        self.rate_limited = 0
        self.dropped = dict.fromkeys(DROP_REASONS, 0)

    def drop(self, reason: str, count: int = 1) -> None:
        """Count ``count`` events dropped for ``reason``."""
        with self._lock:
            self.dropped[reason] += count

    def add(self, counter: Counter, count: int = 1) -> None:
        """Add ``count`` to one of the counters."""
        with self._lock:
            setattr(self, counter, getattr(self, counter) + count)

    def snapshot(
        self, queued: int, accepted: int = 0, spool_pending: int = 0, spool_bytes: int = 0
    ) -> Stats:
        """Freeze the counters into a :class:`Stats` (the buffer and spool give the rest)."""
        with self._lock:
            return Stats(
                queued=queued,
                sent=self.sent,
                dropped=dict(self.dropped),
                retried=self.retried,
                spooled=self.spooled,
                spool_delivered=self.spool_delivered,
                auth_failures=self.auth_failures,
                accepted=accepted,
                rate_limited=self.rate_limited,
                spool_pending=spool_pending,
                spool_bytes=spool_bytes,
            )
