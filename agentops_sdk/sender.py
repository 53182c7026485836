"""The thread that ships encoded batches to the exporter, and decides when to try again.

Two sources feed it: fresh batches the worker hands over (up to ``HANDOFF_BATCHES``, in
memory) and the disk spool. Each request carries as much as is ready, up to ``DRAIN_EVENTS``
events and ``DRAIN_BYTES``; when both sources have work it takes them in turn, so a backlog
drains oldest first, at about the hub's ingest rate, while new events keep flowing.

A transient failure (the hub unreachable, 5xx, 429) never waits in memory when there is a spool:
the batch being sent, and every batch handed over but not yet sent, go to the spool at once, and
the sender pauses, for as long as the hub asked (``Retry-After``) or for a backoff that doubles
from half a second up to ``max_backoff``, with jitter. While it pauses ``offer()`` refuses, so
the worker writes new batches straight to the spool. After the pause the oldest spooled batch
goes first: it is the probe. A 429 is backpressure: the events wait in the spool, never dropped.

Without a spool (``spool=False``, or an exporter other than the hub) the failed batch is held in
memory and retried first after the pause; ``offer()`` refuses meanwhile, so events wait in the
bounded queue and only a full queue drops.

What goes wrong is logged at most once per ``LOG_INTERVAL`` for each cause, with counts.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from agentops_sdk.config import Options
from agentops_sdk.exporters import ExportBatch, Exporter, ExportOutcome
from agentops_sdk.ids import format_id, new_id
from agentops_sdk.spool import Claim, Spool
from agentops_sdk.stats import Counters

__all__ = ["DRAIN_BYTES", "DRAIN_EVENTS", "HANDOFF_BATCHES", "LOG_INTERVAL", "Sender"]

logger = logging.getLogger("agentops_sdk")

DRAIN_EVENTS = 1000
"""Most events in one request: large requests are what lets the hub catch up after an outage."""
DRAIN_BYTES = 4 * 1024 * 1024
"""Most uncompressed bytes in one request (the hub takes up to 16 MiB)."""
HANDOFF_BATCHES = 10
"""Fresh batches waiting for the sender in memory (within the queue's bounds: see
:mod:`agentops_sdk.buffer`); past them, the worker spools. Ten batches of the default size are
one full request."""
LOG_INTERVAL = 10.0
"""At most one log line per cause in this many seconds."""
_FIRST_BACKOFF = 0.5
_LONGEST_RETRY_AFTER = 300.0
"""A Retry-After longer than this is read as this: the hub's clock or config is off."""


class _Work(NamedTuple):
    batch: ExportBatch
    records: int
    """Queue records this settles once its fate is known (0 for spooled batches: already so)."""
    size: int
    """The bytes those records were counted at in the queue."""
    claim: Claim | None


class Sender:
    """Ships batches on its own thread; see the module docstring."""

    def __init__(
        self,
        *,
        exporter: Exporter,
        spool: Spool | None,
        counters: Counters,
        options: Options,
        settle: Callable[[int, int], None],
        on_room: Callable[[], None],
        cancel: threading.Event,
    ) -> None:
        self._exporter = exporter
        self._spool = spool
        self._counters = counters
        self._options = options
        self._settle = settle
        self._on_room = on_room
        self.cancel = cancel
        # Reentrant: the outcome of a request is settled whole under it (see _ship).
        self._cond = threading.Condition(threading.RLock())
        self._handoff: deque[_Work] = deque()
        self._held: _Work | None = None
        self._inflight: _Work | None = None
        self._claiming = False
        """Between taking the spool's turn and holding the claimed batch as in flight."""
        self._paused_until = 0.0
        self._failures = 0
        self._stopping = False
        self._spool_turn = False
        self._last_log: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}
        self._thread: threading.Thread | None = None

    # -- from other threads ------------------------------------------------------------------

    def start(self) -> None:
        """Start the thread (a daemon: it never keeps the process alive)."""
        self._thread = threading.Thread(target=self._run, name="agentops-sender", daemon=True)
        self._thread.start()

    def offer(self, batch: ExportBatch, records: int, size: int) -> bool:
        """Hand ``batch`` (``records`` queue records counted at ``size`` bytes) over for
        sending; False when the sender cannot take it now."""
        with self._cond:
            if (
                self._held is not None
                or len(self._handoff) >= HANDOFF_BATCHES
                or time.monotonic() < self._paused_until
            ):
                return False
            self._handoff.append(_Work(batch, records, size, None))
            self._cond.notify()
        return True

    def wake(self) -> None:
        """Look for work now (``flush()`` wants the spool drained)."""
        with self._cond:
            self._cond.notify()

    @property
    def idle(self) -> bool:
        """Nothing handed over, held or in flight."""
        with self._cond:
            return (
                not self._handoff
                and self._held is None
                and self._inflight is None
                and not self._claiming
            )

    def stop(self, deadline: float) -> bool:
        """Send what is handed over and what the spool holds, then stop; True if the thread
        ended by ``deadline``."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is None:
            return True
        self._thread.join(max(0.0, deadline - time.monotonic()))
        return not self._thread.is_alive()

    def abandon(self) -> None:
        """After the deadline: spool (or drop) everything in memory, and settle it.

        Runs on the caller's thread while the sender may still be blocked in a request: the
        batch in flight is taken over, so the sender will not count it again.
        """
        self.cancel.set()
        with self._cond:
            taken = [*self._handoff, self._held, self._inflight]
            self._handoff.clear()
            self._held = self._inflight = None
        for work in taken:
            if work is None:
                continue
            if work.claim is not None and self._spool is not None:
                self._spool.release(work.claim)
            else:
                self._spool_or_drop(work.batch)
                self._settle(work.records, work.size)

    # -- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        if self._spool is not None:
            self._spool.release_stale_claims()
        try:
            while True:
                work = self._next()
                if work is None:
                    return
                self._ship(work)
        except Exception:
            logger.exception("agentops: the delivery sender failed; events are no longer sent")

    def _next(self) -> _Work | None:
        """Wait for the next thing to send; None when stopping with nothing left, or cancelled."""
        spool = self._spool
        while True:
            spooled = spool is not None and spool.pending() > 0
            with self._cond:
                if self.cancel.is_set():
                    return None
                now = time.monotonic()
                if now < self._paused_until:
                    self._cond.wait(self._paused_until - now)
                    continue
                if self._held is not None:
                    work, self._held = self._held, None
                    self._inflight = work
                    return work
                if self._handoff and not (spooled and self._spool_turn):
                    self._spool_turn = spooled
                    self._inflight = self._take_handoff()
                    return self._inflight
                if not spooled:
                    if self._stopping:
                        return None
                    self._cond.wait(self._options.flush_interval)
                    continue
                self._spool_turn = False
                self._claiming = True
            assert spool is not None
            claim = spool.claim(DRAIN_EVENTS, DRAIN_BYTES)
            with self._cond:
                self._claiming = False
                if claim is not None:
                    work = _Work(claim.batch, 0, 0, claim)
                    self._inflight = work
                    return work

    def _take_handoff(self) -> _Work:
        """Every handed-over batch that fits in one request, merged (under the lock)."""
        taken = [self._handoff.popleft()]
        events = len(taken[0].batch)
        while self._handoff and events + len(self._handoff[0].batch) <= DRAIN_EVENTS:
            work = self._handoff.popleft()
            taken.append(work)
            events += len(work.batch)
        self._on_room()
        if len(taken) == 1:
            return taken[0]
        merged = ExportBatch.merge(format_id(new_id()), [work.batch for work in taken])
        records = sum(work.records for work in taken)
        return _Work(merged, records, sum(work.size for work in taken), None)

    def _ship(self, work: _Work) -> None:
        """Send ``work`` (already marked in flight by ``_next``) and settle its outcome.

        The outcome is settled under the lock, and only then is the work no longer in flight:
        ``abandon()`` cannot take it over halfway, and ``idle`` never sees a moment when the
        batch is neither in flight nor back in the spool."""
        outcome = self._export(work.batch)
        pause = None
        with self._cond:
            if self._inflight is not work:  # abandon() took it over meanwhile
                return
            if outcome.status == "sent":
                self._delivered(work, outcome)
            elif outcome.status == "retry":
                pause = self._not_now(work, outcome)
            else:
                if outcome.auth_failed:
                    self._counters.add("auth_failures")
                if work.claim is not None and self._spool is not None:
                    self._spool.done(work.claim)
                self._counters.drop("export_failed", len(work.batch))
                self._settle(work.records, work.size)
            self._inflight = None
        if pause is not None:
            self._report_pause(outcome, pause)

    def _export(self, batch: ExportBatch) -> ExportOutcome:
        deadline = time.monotonic() + self._options.export_timeout
        try:
            return self._exporter.export(batch, deadline=deadline, cancel=self.cancel)
        except Exception as exc:
            logger.exception("agentops: exporter %r raised", self._exporter)
            return ExportOutcome("failed", detail=repr(exc))

    def _delivered(self, work: _Work, outcome: ExportOutcome) -> None:
        rejected = min(outcome.rejected, len(work.batch))
        delivered = len(work.batch) - rejected
        self._counters.add("sent", delivered)
        if rejected:
            self._counters.drop("rejected", rejected)
        if work.claim is not None and self._spool is not None:
            self._spool.done(work.claim)
            self._counters.add("spool_delivered", delivered)
        if self._failures:
            self._failures = 0
            backlog = self._spool.pending_events()[0] if self._spool is not None else 0
            logger.warning(
                "agentops: the hub takes events again; %d wait in the spool and go out now",
                backlog,
            )
            self._last_log.clear()
        self._settle(work.records, work.size)

    def _not_now(self, work: _Work, outcome: ExportOutcome) -> float:
        """A transient failure: keep the batch (spool or memory) and pause; return the pause."""
        self._counters.add("retried")
        if outcome.throttled:
            self._counters.add("rate_limited")
        spool = self._spool
        if work.claim is not None and spool is not None:
            spool.release(work.claim)
        elif spool is not None:
            self._spool_or_drop(work.batch)
            self._settle(work.records, work.size)
        else:
            with self._cond:
                self._held = work
        pause = self._pause(outcome)
        if spool is not None:
            with self._cond:
                waiting = list(self._handoff)
                self._handoff.clear()
            for handed in waiting:
                self._spool_or_drop(handed.batch)
                self._settle(handed.records, handed.size)
            if waiting:
                self._on_room()
        return pause

    def _pause(self, outcome: ExportOutcome) -> float:
        self._failures += 1
        if outcome.retry_after is not None:
            pause = min(outcome.retry_after, _LONGEST_RETRY_AFTER)
        else:
            ceiling = min(self._options.max_backoff, _FIRST_BACKOFF * 2 ** (self._failures - 1))
            pause = ceiling / 2 + random.uniform(0, ceiling / 2)
        with self._cond:
            self._paused_until = time.monotonic() + pause
        return pause

    def _report_pause(self, outcome: ExportOutcome, pause: float) -> None:
        cause = "throttled" if outcome.throttled else "unreachable"
        self._unlogged[cause] = self._unlogged.get(cause, 0) + 1
        now = time.monotonic()
        if now - self._last_log.get(cause, -LOG_INTERVAL) < LOG_INTERVAL:
            return
        if self._stopping or self.cancel.is_set():
            return  # shutting down: its result (and the line at exit) says what was left
        self._last_log[cause] = now
        times, self._unlogged[cause] = self._unlogged[cause], 0
        if self._spool is not None:
            events, size = self._spool.pending_events()
            where = f"{events} events ({size} bytes) wait in the spool"
        else:
            where = "events wait in memory (no spool)"
        if outcome.throttled:
            logger.warning(
                "agentops: the hub is rate limiting this API key (%s; %d times in the last "
                "%.0f s); %s; next try in %.1f s",
                outcome.detail,
                times,
                LOG_INTERVAL,
                where,
                pause,
            )
        else:
            logger.warning(
                "agentops: cannot reach the hub (%s; %d times in the last %.0f s); %s; next "
                "try in %.1f s",
                outcome.detail,
                times,
                LOG_INTERVAL,
                where,
                pause,
            )

    def _spool_or_drop(self, batch: ExportBatch) -> None:
        if self._spool is not None and self._spool.write(batch):
            self._counters.add("spooled", len(batch))
        else:
            reason = "spool_full" if self._spool is not None else "export_failed"
            self._counters.drop(reason, len(batch))
