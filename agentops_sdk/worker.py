"""The background thread that turns queued records into batches and hands them to the sender.

It wakes when a batch's worth of events is queued, when ``flush()`` asks, or every
``flush_interval``. The slow work of an event happens here, never on an agent's thread: the wire
dicts, the user's ``before_send``, JSON encoding. Each batch goes to the sender
(:mod:`agentops_sdk.sender`), which owns the network; when the sender cannot take it now (the
hub is down, throttling, or slower than the agent), the batch goes to the spool at once, so the
in-memory queue never fills while the hub is away.

Overflow: an agent that outpaces even this thread fills the queue. With a spool and
``overflow="spill"`` (the default), the agent's thread that finds the queue full encodes the
oldest batch of it and writes it to the spool itself (:meth:`Worker.spill`): the agent pays for
its own events instead of losing them, and only a full spool drops. With ``overflow="drop"`` the
new event is dropped and counted, as a bounded queue does.

Every ``LOG_INTERVAL`` the worker logs what was dropped since the last line, by cause.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from agentops_sdk.buffer import EventBuffer, Queued
from agentops_sdk.config import Options
from agentops_sdk.exporters import ExportBatch, Exporter, encode
from agentops_sdk.ids import format_id, new_id
from agentops_sdk.sender import LOG_INTERVAL, Sender
from agentops_sdk.spool import Spool
from agentops_sdk.stats import Counters

__all__ = ["Worker"]

logger = logging.getLogger("agentops_sdk")

_DROP_CAUSES = {
    "queue_full": "the in-memory queue was full",
    "spool_full": "the hub could not take them and the spool was full",
    "oversize": "each was larger than a batch",
    "serialization_error": "not encodable as JSON",
    "before_send": "before_send dropped them",
}
"""The drop reasons the worker sums up in its log lines. The others are logged where they
happen (the hub's refusals, with its reason) or were asked for (``exporter="none"``)."""


class Worker:
    """Drains ``buffer`` into batches for the sender; owns the records' accounting."""

    def __init__(
        self,
        *,
        buffer: EventBuffer,
        exporter: Exporter | None,
        counters: Counters,
        options: Options,
        spool: Spool | None,
    ) -> None:
        self._buffer = buffer
        self._exporter = exporter
        self._counters = counters
        self._options = options
        self._spool = spool
        self._wake = buffer.batch_ready
        self._stopping = threading.Event()
        self.cancel = threading.Event()
        """Set to abandon waits at once (the shutdown deadline has passed)."""
        self._progress = threading.Condition()
        self.processed = 0
        """Records taken from the buffer whose fate is decided (sent, spooled or dropped)."""
        self.sender: Sender | None = None
        if exporter is not None:
            self.sender = Sender(
                exporter=exporter,
                spool=spool,
                counters=counters,
                options=options,
                settle=self._settle,
                on_room=self._room_freed,
                cancel=self.cancel,
            )
        self._waiting: tuple[ExportBatch, int, int] | None = None
        """Without a spool: a batch the sender could not take yet, offered again first."""
        self._before_send_failed = False
        self._reported_drops = dict(counters.dropped)
        self._next_report = 0.0
        """When drops may be logged next: the first at once, then once per interval."""
        self._thread: threading.Thread | None = None

    # -- control, from other threads ---------------------------------------------------------

    def start(self) -> None:
        """Start the threads (daemons: they never keep the process alive)."""
        if self.sender is not None:
            self.sender.start()
        self._thread = threading.Thread(target=self._run, name="agentops-worker", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """True while the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def wait_processed(self, target: int, deadline: float) -> bool:
        """Wake the worker and wait until ``target`` records are processed or ``deadline``."""
        self._wake.set()
        with self._progress:
            return self._progress.wait_for(
                lambda: self.processed >= target, timeout=max(0.0, deadline - time.monotonic())
            )

    def wait_delivered(self, deadline: float) -> bool:
        """Wait until the sender has nothing in memory and the spool is empty, or ``deadline``.

        Asks the sender to drain the spool now; polls (the spool is shared with other processes
        and has no notification of its own)."""
        sender, spool = self.sender, self._spool
        if sender is None:
            return True
        sender.wake()
        while not (sender.idle and (spool is None or spool.pending() == 0)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with self._progress:
                self._progress.wait(min(remaining, 0.02))
        return True

    def stop(self, deadline: float) -> bool:
        """Encode what is queued and hand it over, then stop; the sender delivers it and the
        spool before ``deadline``. True if both threads ended by then."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
            if self._thread.is_alive():
                return False
        return self.sender is None or self.sender.stop(deadline)

    def abandon(self) -> None:
        """After the deadline: spool (or drop) what is still in memory, on the caller's thread."""
        self.cancel.set()
        if self.sender is not None:
            self.sender.abandon()
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            self._spool_or_drop(waiting[0])
            self._settle(waiting[1], waiting[2])
        while True:
            items = self._buffer.take(self._options.batch_max_events, self._options.batch_max_bytes)
            if not items:
                break
            batch = self._encode(items)
            if batch is not None:
                self._spool_or_drop(batch)
            self._settle(len(items), items.size)

    def spill(self, items: Sequence[Queued]) -> None:
        """Encode ``items`` and write them to the spool, on the calling (agent's) thread.

        The buffer calls this with the oldest records of a full queue; never raises."""
        try:
            batch = self._encode(items)
            if batch is not None:
                self._spool_or_drop(batch)
        except Exception:
            logger.exception("agentops: could not spill events to the spool")
            self._counters.drop("serialization_error", len(items))
        self._mark_processed(len(items))

    # -- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(self._options.flush_interval)
                self._wake.clear()
                stopping = self._stopping.is_set()
                self._drain()
                self._report_drops()
                if self.cancel.is_set():
                    return
                if stopping and self._waiting is None and not len(self._buffer):
                    self._report_drops(final=True)
                    return  # else the sender had no room yet: it wakes us when it has
        except Exception:
            logger.exception("agentops: the delivery worker failed; events are no longer sent")

    def _drain(self) -> None:
        options = self._options
        if self._waiting is not None:
            if not self._hand_over(*self._waiting):
                return
            self._waiting = None
        while not self.cancel.is_set():
            items = self._buffer.take(options.batch_max_events, options.batch_max_bytes)
            if not items:
                return
            if self._exporter is None:  # exporter="none": settle at once, hold nothing
                self._counters.drop("no_exporter", len(items))
                self._settle(len(items), items.size)
                continue
            encoded = self._encode(items)
            if encoded is None:
                self._settle(len(items), items.size)
            elif not self._hand_over(encoded, len(items), items.size):
                self._waiting = (encoded, len(items), items.size)
                return  # no spool: the events wait (bounded) until the sender takes them

    def _hand_over(self, batch: ExportBatch, records: int, size: int) -> bool:
        """Give ``batch`` to the sender, or to the spool when the sender cannot take it now;
        False when neither can (no spool), so the caller keeps it."""
        assert self.sender is not None
        if self.sender.offer(batch, records, size):
            return True
        if self._spool is None:
            return False
        self._spool_or_drop(batch)
        self._settle(records, size)
        return True

    def _spool_or_drop(self, batch: ExportBatch) -> None:
        if self._spool is not None and self._spool.write(batch):
            self._counters.add("spooled", len(batch))
        else:
            reason = "spool_full" if self._spool is not None else "export_failed"
            self._counters.drop(reason, len(batch))

    def _room_freed(self) -> None:
        """The sender took batches: wake the worker if it holds one the sender refused.

        Only then: waking it on every take would send the queue out in slivers."""
        if self._waiting is not None:
            self._wake.set()

    def _settle(self, records: int, size: int) -> None:
        """Records taken from the buffer (counted at ``size`` bytes) reached their fate."""
        self._buffer.release(records, size)
        self._mark_processed(records)

    def _mark_processed(self, records: int) -> None:
        with self._progress:
            self.processed += records
            self._progress.notify_all()

    def _report_drops(self, *, final: bool = False) -> None:
        """Log what was dropped since the last such line, by cause: the first drops at once,
        then at most once per interval, and once more when stopping."""
        now = time.monotonic()
        if now < self._next_report and not final:
            return
        dropped = self._counters.snapshot(0).dropped
        new = {
            reason: dropped[reason] - self._reported_drops.get(reason, 0)
            for reason in _DROP_CAUSES
            if dropped[reason] > self._reported_drops.get(reason, 0)
        }
        if not new:
            return
        self._reported_drops = dropped
        self._next_report = now + LOG_INTERVAL
        logger.warning(
            "agentops: dropped %d events: %s (see agentops.stats())",
            sum(new.values()),
            "; ".join(f"{n} {reason}: {_DROP_CAUSES[reason]}" for reason, n in new.items()),
        )

    def _encode(self, items: Sequence[Queued]) -> ExportBatch | None:
        """Wire dicts, ``before_send`` and JSON for ``items``; drops are counted here."""
        before_send = self._options.before_send
        max_bytes = self._options.batch_max_bytes
        events: list[dict[str, Any]] = []
        lines: list[bytes] = []
        for item in items:
            event: dict[str, Any] | None = item.to_wire()  # type: ignore[attr-defined]
            if before_send is not None:
                event = self._apply_before_send(before_send, event)
                if event is None:
                    continue
            try:
                line = encode(event)
            except (TypeError, ValueError):
                self._counters.drop("serialization_error")
                continue
            if len(line) > max_bytes:
                self._counters.drop("oversize")
                continue
            events.append(event)  # type: ignore[arg-type]
            lines.append(line)
        if not events:
            return None
        return ExportBatch(format_id(new_id()), events, lines)

    def _apply_before_send(self, hook: Any, event: Any) -> dict[str, Any] | None:
        try:
            result = hook(event)
        except Exception:
            if not self._before_send_failed:
                self._before_send_failed = True
                logger.exception("agentops: before_send raised; such events are dropped")
            result = None
        if not isinstance(result, dict):
            self._counters.drop("before_send")
            return None
        return result
